import Testing
import VirtioCore
import VirtioSoftDevice

/// The device config readers (virtio 1.2 §5.x.4) on a software device with
/// a given config space.
@Suite struct DeviceConfigTests {
    final class ConfigModel: SoftDeviceModel, @unchecked Sendable {
        let deviceType: DeviceType
        let deviceFeatures: UInt64
        let queueSizes = [8]
        let bytes: [UInt8]
        init(_ type: DeviceType, features: UInt64, config: [UInt8]) {
            deviceType = type
            deviceFeatures = features | TransportFeatures.version1.rawValue
            bytes = config
        }
        func config() -> [UInt8] { bytes }
        func service(queue index: Int, queues: [DeviceQueue?]) -> [Int] { [] }
    }

    func read(_ type: DeviceType, _ features: UInt64, _ config: [UInt8]) throws -> [String: ConfigValue] {
        let device = SoftDevice(model: ConfigModel(type, features: features, config: config),
                                region: DMARegion(anonymousSize: 4096))
        return try DeviceConfigReader.read(device, negotiated: features)
    }

    func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    @Test func block() throws {
        var c = [UInt8](repeating: 0, count: 60)
        c.replaceSubrange(0..<8, with: le(131072, 8))
        c.replaceSubrange(12..<16, with: le(126, 4))
        c.replaceSubrange(20..<24, with: le(512, 4))
        c[24] = 3
        let all = try read(.block, BlockFeatures([.segMax, .blockSize, .topology]).rawValue, c)
        #expect(all["capacity"] == .number(131072) && all["seg_max"] == .number(126) && all["blk_size"] == .number(512))
        #expect(all["physical_block_exp"] == .number(3))
        // Fields whose feature was not negotiated are not reported.
        let bare = try read(.block, 0, c)
        #expect(bare["capacity"] == .number(131072) && bare["blk_size"] == nil && bare["seg_max"] == nil)
    }

    @Test func net() throws {
        let c: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x01, 1, 0, 1, 0, 0xdc, 0x05]
        let all = try read(.network, NetFeatures([.mac, .status, .mtu]).rawValue, c)
        #expect(all["mac"] == .text("52:54:00:12:34:01") && all["link"] == .text("up") && all["mtu"] == .number(1500))
    }

    @Test func ninePTagIsBoundedByTheConfigSpace() throws {
        let tag = Array("virtiod9p".utf8)
        let good = try read(.ninePTransport, NinePFeatures.mountTag.rawValue, le(UInt64(tag.count), 2) + tag)
        #expect(good["mount_tag"] == .text("virtiod9p"))
        // A device claiming a 60000-byte tag in a 11-byte config space.
        let lying = try read(.ninePTransport, NinePFeatures.mountTag.rawValue, le(60000, 2) + tag)
        #expect(lying["mount_tag"] == .text("virtiod9p") && lying["mount_tag_truncated_from"] == .number(60000))
    }

    @Test func consoleAndBalloon() throws {
        let console = try read(.console, ConsoleFeatures([.size, .multiport]).rawValue, le(80, 2) + le(25, 2) + le(31, 4) + le(0, 4))
        #expect(console["cols"] == .number(80) && console["rows"] == .number(25) && console["max_nr_ports"] == .number(31))
        let balloon = try read(.balloon, 0, le(131072, 4) + le(512, 4))
        #expect(balloon["num_pages"] == .number(131072) && balloon["actual"] == .number(512))
    }
}
