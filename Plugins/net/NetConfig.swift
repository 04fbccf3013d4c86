import VirtioCore
import VirtiodPluginRuntime

/// struct virtio_net_config (virtio 1.2 §5.1.4), for reports: each field
/// only when its feature was negotiated.
enum NetConfig {
    static func read(_ transport: any Transport, negotiated: UInt64) throws -> [String: ConfigValue] {
        var c = ConfigFields(transport, negotiated: negotiated)
        if c.has(NetFeatures.mac.rawValue), transport.configSize >= 6 {
            let mac = try transport.readConfig(offset: 0, length: 6)
            c.set("mac", .text(mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")))
        }
        if c.has(NetFeatures.status.rawValue) {
            try c.number("status", UInt16.self, at: 6)
            if case .number(let s) = c["status"] { c.set("link", .text(s & 1 != 0 ? "up" : "down")) }
        }
        if c.has(NetFeatures.multiqueue.rawValue) { try c.number("max_virtqueue_pairs", UInt16.self, at: 8) }
        if c.has(NetFeatures.mtu.rawValue) { try c.number("mtu", UInt16.self, at: 10) }
        if c.has(NetFeatures.speedDuplex.rawValue) {
            try c.number("speed", UInt32.self, at: 12)
            try c.number("duplex", UInt8.self, at: 16)
        }
        return c.values
    }
}
