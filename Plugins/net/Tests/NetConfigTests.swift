import Testing
import VirtioCore
import VirtioSoftDevice
@testable import virtiod_net

/// struct virtio_net_config (virtio 1.2 §5.1.4) read on a software device.
@Suite struct NetConfigTests {
    @Test func macLinkAndMTU() throws {
        let c: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x01, 1, 0, 1, 0, 0xdc, 0x05]
        let features = NetFeatures([.mac, .status, .mtu]).rawValue
        let all = try NetConfig.read(ConfigSpaceModel.device(.network, features: features, config: c), negotiated: features)
        #expect(all["mac"] == .text("52:54:00:12:34:01") && all["link"] == .text("up") && all["mtu"] == .number(1500))
        #expect(all["max_virtqueue_pairs"] == nil)
    }
}
