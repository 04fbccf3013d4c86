import VirtioCore
import VirtiodPluginRuntime

/// struct virtio_balloon_config (virtio 1.2 §5.5.4), for reports.
enum BalloonConfig {
    static func read(_ transport: any Transport, negotiated: UInt64) throws -> [String: ConfigValue] {
        var c = ConfigFields(transport, negotiated: negotiated)
        try c.number("num_pages", UInt32.self, at: 0)
        try c.number("actual", UInt32.self, at: 4)
        return c.values
    }
}
