/// Little-endian fields written in order: the one way records (queue
/// states, hand-over frames) and kernel requests (netlink) are laid out.
public struct ByteWriter {
    public var bytes: [UInt8] = []
    public init() {}
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func zeros(_ count: Int) { bytes += repeatElement(0, count: count) }
}

/// Reads little-endian fields in order; the caller checked the total length first.
public struct ByteReader {
    public let bytes: [UInt8]
    public var at = 0
    public init(bytes: [UInt8], at: Int = 0) {
        self.bytes = bytes
        self.at = at
    }
    public mutating func u8() -> UInt8 { defer { at += 1 }; return bytes[at] }
    public mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    public mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    public mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }
}
