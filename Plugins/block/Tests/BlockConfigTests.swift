import Testing
import VirtioCore
import VirtioSoftDevice
@testable import virtiod_block

/// struct virtio_blk_config (virtio 1.2 §5.2.4) read on a software device.
@Suite struct BlockConfigTests {
    let le = ConfigSpaceModel.le

    @Test func fieldsOnlyWithTheirFeatures() throws {
        var c = [UInt8](repeating: 0, count: 60)
        c.replaceSubrange(0..<8, with: le(131072, 8))
        c.replaceSubrange(12..<16, with: le(126, 4))
        c.replaceSubrange(20..<24, with: le(512, 4))
        c[24] = 3
        let features = BlockFeatures([.segMax, .blockSize, .topology]).rawValue
        let all = try BlockConfig.read(ConfigSpaceModel.device(.block, features: features, config: c), negotiated: features)
        #expect(all["capacity"] == .number(131072) && all["seg_max"] == .number(126) && all["blk_size"] == .number(512))
        #expect(all["physical_block_exp"] == .number(3))
        // Fields whose feature was not negotiated are not reported.
        let bare = try BlockConfig.read(ConfigSpaceModel.device(.block, features: 0, config: c), negotiated: 0)
        #expect(bare["capacity"] == .number(131072) && bare["blk_size"] == nil && bare["seg_max"] == nil)
    }

    @Test func aShortConfigSpaceYieldsOnlyWhatItHolds() throws {
        let features = BlockFeatures([.segMax, .blockSize]).rawValue
        let short = try BlockConfig.read(ConfigSpaceModel.device(.block, features: features, config: le(8, 8) + le(0, 4)),
                                         negotiated: features)
        #expect(short["capacity"] == .number(8) && short["seg_max"] == nil && short["blk_size"] == nil)
    }
}
