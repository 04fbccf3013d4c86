import VirtioCore
import VirtiodPluginRuntime

/// struct virtio_console_config (virtio 1.2 §5.3.4), for reports.
enum ConsoleConfig {
    static func read(_ transport: any Transport, negotiated: UInt64) throws -> [String: ConfigValue] {
        var c = ConfigFields(transport, negotiated: negotiated)
        if c.has(ConsoleFeatures.size.rawValue) {
            try c.number("cols", UInt16.self, at: 0)
            try c.number("rows", UInt16.self, at: 2)
        }
        if c.has(ConsoleFeatures.multiport.rawValue) { try c.number("max_nr_ports", UInt32.self, at: 4) }
        return c.values
    }
}
