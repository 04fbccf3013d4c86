import VirtioCore
import VirtiodPluginRuntime

/// The virtio 9P config space: struct virtio_9p_config { le16 tag_len; u8 tag[]; }.
enum NinePConfig {
    static func read(_ transport: any Transport, negotiated: UInt64) throws -> [String: ConfigValue] {
        var c = ConfigFields(transport, negotiated: negotiated)
        if c.has(NinePFeatures.mountTag.rawValue), transport.configSize >= 2 {
            let length = Int(try transport.readConfig(UInt16.self, at: 0))
            // The device says how long the tag is; believe it only within the config space.
            let usable = min(length, transport.configSize - 2)
            let tag = try transport.readConfig(offset: 2, length: usable)
            c.set("mount_tag", .text(String(decoding: tag.prefix { $0 != 0 }, as: UTF8.self)))
            if usable < length { c.set("mount_tag_truncated_from", .number(UInt64(length))) }
        }
        return c.values
    }
}
