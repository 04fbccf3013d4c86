/// One value of a device's configuration space, as reports show it.
public enum ConfigValue: Sendable, Hashable, Codable, CustomStringConvertible {
    case number(UInt64)
    case text(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(UInt64.self) { self = .number(n) } else { self = .text(try c.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let n): try c.encode(n)
        case .text(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .number(let n): String(n)
        case .text(let s): s
        }
    }
}

/// Readers of the device-specific configuration layouts (virtio 1.2 §5.x.4),
/// each field only when the feature that makes it valid was negotiated.
/// Reads go through `Transport.readConfig` (generation-checked snapshot);
/// the device's values are reported, never used as sizes here.
public enum DeviceConfigReader {
    public static func read(_ transport: any Transport, negotiated: UInt64) throws -> [String: ConfigValue] {
        let t = transport
        func has(_ bits: UInt64) -> Bool { negotiated & bits == bits }
        var out: [String: ConfigValue] = [:]
        func num<T: FixedWidthInteger>(_ name: String, _: T.Type, _ offset: Int) throws {
            guard offset + MemoryLayout<T>.size <= t.configSize else { return }
            out[name] = .number(UInt64(try t.readConfig(T.self, at: offset)))
        }
        switch t.deviceType {
        case .network: // §5.1.4 struct virtio_net_config
            if has(NetFeatures.mac.rawValue), t.configSize >= 6 {
                let mac = try t.readConfig(offset: 0, length: 6)
                out["mac"] = .text(mac.map { hex2($0) }.joined(separator: ":"))
            }
            if has(NetFeatures.status.rawValue) {
                try num("status", UInt16.self, 6)
                if case .number(let s) = out["status"] { out["link"] = .text(s & 1 != 0 ? "up" : "down") }
            }
            if has(NetFeatures.multiqueue.rawValue) { try num("max_virtqueue_pairs", UInt16.self, 8) }
            if has(NetFeatures.mtu.rawValue) { try num("mtu", UInt16.self, 10) }
            if has(NetFeatures.speedDuplex.rawValue) {
                try num("speed", UInt32.self, 12)
                try num("duplex", UInt8.self, 16)
            }
        case .block: // §5.2.4 struct virtio_blk_config
            try num("capacity", UInt64.self, 0)
            if has(BlockFeatures.sizeMax.rawValue) { try num("size_max", UInt32.self, 8) }
            if has(BlockFeatures.segMax.rawValue) { try num("seg_max", UInt32.self, 12) }
            if has(BlockFeatures.geometry.rawValue) {
                try num("cylinders", UInt16.self, 16)
                try num("heads", UInt8.self, 18)
                try num("sectors", UInt8.self, 19)
            }
            if has(BlockFeatures.blockSize.rawValue) { try num("blk_size", UInt32.self, 20) }
            if has(BlockFeatures.topology.rawValue) {
                try num("physical_block_exp", UInt8.self, 24)
                try num("alignment_offset", UInt8.self, 25)
                try num("min_io_size", UInt16.self, 26)
                try num("opt_io_size", UInt32.self, 28)
            }
            if has(BlockFeatures.multiqueue.rawValue) { try num("num_queues", UInt16.self, 34) }
        case .console: // §5.3.4 struct virtio_console_config
            if has(ConsoleFeatures.size.rawValue) {
                try num("cols", UInt16.self, 0)
                try num("rows", UInt16.self, 2)
            }
            if has(ConsoleFeatures.multiport.rawValue) { try num("max_nr_ports", UInt32.self, 4) }
        case .balloon: // §5.5.4 struct virtio_balloon_config
            try num("num_pages", UInt32.self, 0)
            try num("actual", UInt32.self, 4)
        case .ninePTransport: // virtio 9P: struct virtio_9p_config { le16 tag_len; u8 tag[]; }
            if has(NinePFeatures.mountTag.rawValue), t.configSize >= 2 {
                let length = Int(try t.readConfig(UInt16.self, at: 0))
                // The device says how long the tag is; believe it only within the config space.
                let usable = min(length, t.configSize - 2)
                let tag = try t.readConfig(offset: 2, length: usable)
                out["mount_tag"] = .text(String(decoding: tag.prefix { $0 != 0 }, as: UTF8.self))
                if usable < length { out["mount_tag_truncated_from"] = .number(UInt64(length)) }
            }
        default: break
        }
        return out
    }

    private static func hex2(_ b: UInt8) -> String {
        let s = String(b, radix: 16)
        return s.count == 1 ? "0" + s : s
    }
}
