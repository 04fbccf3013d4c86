/// The NBD transmission phase as the kernel's nbd driver speaks it on each
/// connection (NBD protocol, doc/proto.md in the NBD project; simple replies
/// only, which is all the kernel reads). Big-endian on the wire.
enum NBDWire {
    static let requestMagic: UInt32 = 0x2560_9513
    static let replyMagic: UInt32 = 0x6744_6698
    static let requestSize = 28
    static let replySize = 16

    enum Command: UInt16, Codable {
        case read = 0, write = 1, disconnect = 2, flush = 3, trim = 4, writeZeroes = 6
    }

    /// Error values of replies (the protocol's errno subset).
    static let eperm: UInt32 = 1, eio: UInt32 = 5, einval: UInt32 = 22, enospc: UInt32 = 28, enotsup: UInt32 = 95

    struct Request: Equatable {
        var command: UInt16
        var flags: UInt16
        /// Opaque to the server, echoed in the reply.
        var handle: UInt64
        var offset: UInt64
        var length: UInt32
    }

    /// The 28-byte request header; nil if the magic is wrong (the stream is
    /// out of step and cannot be trusted any further).
    static func parse(_ b: [UInt8]) -> Request? {
        guard b.count == requestSize, be32(b, 0) == requestMagic else { return nil }
        let type = be32(b, 4)
        return Request(command: UInt16(type & 0xffff), flags: UInt16(type >> 16), handle: raw64(b, 8),
                       offset: UInt64(be32(b, 16)) << 32 | UInt64(be32(b, 20)), length: be32(b, 24))
    }

    static func request(_ r: Request) -> [UInt8] {
        var b = [UInt8]()
        b += bytes(requestMagic); b += bytes(UInt32(r.flags) << 16 | UInt32(r.command)); b += raw(r.handle)
        b += bytes(UInt32(r.offset >> 32)); b += bytes(UInt32(truncatingIfNeeded: r.offset)); b += bytes(r.length)
        return b
    }

    /// The 16-byte reply header (read data follows it on success).
    static func reply(error: UInt32, handle: UInt64) -> [UInt8] {
        bytes(replyMagic) + bytes(error) + raw(handle)
    }

    static func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    static func bytes(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

    /// The handle's 8 bytes, kept in order (little-endian packing, unpacked the same way).
    static func raw64(_ b: [UInt8], _ i: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[i + $1]) << (8 * $1) } }
    static func raw(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}
