import Testing
import VirtioCore
import VirtioSoftDevice
@testable import virtiod_9p

/// The 9P mount tag, bounded by the config space whatever length the device states.
@Suite struct NinePConfigTests {
    let le = ConfigSpaceModel.le

    @Test func tagIsBoundedByTheConfigSpace() throws {
        let tag = Array("virtiod9p".utf8)
        let f = NinePFeatures.mountTag.rawValue
        let good = try NinePConfig.read(ConfigSpaceModel.device(.ninePTransport, features: f, config: le(UInt64(tag.count), 2) + tag),
                                        negotiated: f)
        #expect(good["mount_tag"] == .text("virtiod9p"))
        // A device claiming a 60000-byte tag in an 11-byte config space.
        let lying = try NinePConfig.read(ConfigSpaceModel.device(.ninePTransport, features: f, config: le(60000, 2) + tag),
                                         negotiated: f)
        #expect(lying["mount_tag"] == .text("virtiod9p") && lying["mount_tag_truncated_from"] == .number(60000))
    }
}
