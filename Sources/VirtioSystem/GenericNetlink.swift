import Glibc
import SystemPackage
import VirtioCore

/// Generic netlink (NETLINK_GENERIC): a family resolved by name through the
/// controller, then requests answered by a reply or an acknowledgement.
/// Blocking, one request at a time, every reply checked against the
/// request's sequence number. Used for the kernel's "nbd" family (CONNECT,
/// RECONFIGURE, DISCONNECT), which needs CAP_SYS_ADMIN: the supervisor's.
/// Replies come from the kernel; every length in them is still checked
/// (`NetlinkParser`).
public final class GenericNetlink {
    let fd: FileDescriptor
    private var sequence: UInt32 = 1
    public let family: UInt16

    static let netlinkGeneric: Int32 = 16
    static let controllerID: UInt16 = 0x10
    static let ctrlGetFamily: UInt8 = 3
    static let ctrlAttrFamilyID: UInt16 = 1, ctrlAttrFamilyName: UInt16 = 2
    static let nlmsgError: UInt16 = 2, nlmsgDone: UInt16 = 3
    // NLM_F_REQUEST | NLM_F_ACK
    static let requestFlags: UInt16 = 0x1 | 0x4

    /// Open a socket and resolve `name` (the kernel loads the family's module
    /// on demand where it may). Throws if the family does not exist.
    public init(family name: String) throws {
        fd = try NetlinkSocket.open(protocol: Self.netlinkGeneric, groups: 0, blocking: true)
        do {
            var a = NetlinkAttributes()
            a.string(Self.ctrlAttrFamilyName, name)
            let reply = try Self.exchange(fd, &sequence, type: Self.controllerID, command: Self.ctrlGetFamily, a)
            guard let id = reply[Self.ctrlAttrFamilyID], id.count >= 2 else {
                throw SystemCallError("generic netlink family \(name): no id in the controller's answer", .noSuchFileOrDirectory)
            }
            family = NetlinkParser.le16(id, at: id.startIndex)
        } catch {
            try? fd.close()
            throw error
        }
    }

    deinit { try? fd.close() }

    /// Send `command` with `attributes`; the reply's attributes (empty for a
    /// bare acknowledgement). A kernel error is thrown with its errno.
    public func request(_ command: UInt8, _ attributes: NetlinkAttributes) throws -> [UInt16: ArraySlice<UInt8>] {
        try Self.exchange(fd, &sequence, type: family, command: command, attributes)
    }

    private static func exchange(_ fd: FileDescriptor, _ sequence: inout UInt32, type: UInt16, command: UInt8,
                                 _ attributes: NetlinkAttributes) throws -> [UInt16: ArraySlice<UInt8>] {
        sequence &+= 1
        let seq = sequence
        var w = ByteWriter()
        // nlmsghdr: length, type, flags, sequence, port; genlmsghdr: command, version, reserved.
        w.u32(UInt32(16 + 4 + attributes.bytes.count)); w.u16(type); w.u16(requestFlags); w.u32(seq); w.u32(0)
        w.u8(command); w.u8(1); w.u16(0)
        let message = w.bytes + attributes.bytes
        let sent = message.withUnsafeBytes { send(fd.rawValue, $0.baseAddress, $0.count, 0) }
        guard sent == message.count else { throw SystemCallError("send generic netlink command \(command)") }
        var result: [UInt16: ArraySlice<UInt8>] = [:]
        var buffer = [UInt8](repeating: 0, count: 16384)
        // A reply (if any) comes first, then the acknowledgement (error 0) or an error.
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd.rawValue, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw SystemCallError("recv generic netlink answer") }
            var error: Int32?
            var done = false
            let data = buffer[0..<n]
            NetlinkParser.forEachMessage(data, withSequence: seq) { kind, body in
                if kind == nlmsgError {
                    // struct nlmsgerr: int error, then the request's header.
                    error = body.count >= 4 ? Int32(bitPattern: NetlinkParser.le32(body, at: body.startIndex)) : -EPROTO
                    done = true
                } else if kind == nlmsgDone {
                    done = true
                } else if body.count >= 4 {
                    NetlinkParser.forEachAttribute(body.dropFirst(4)) { result[$0 & 0x3fff] = $1 }
                }
            }
            if let error, error != 0 {
                throw SystemCallError("generic netlink command \(command)", Errno(rawValue: -error))
            }
            if done { return result }
        }
    }
}

/// Netlink attributes (struct nlattr: length u16, type u16, value, padded
/// to 4 bytes) in host byte order, as the kernel reads them.
public struct NetlinkAttributes {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public mutating func u32(_ type: UInt16, _ value: UInt32) {
        var w = ByteWriter(); w.u32(value); raw(type, w.bytes)
    }

    public mutating func u64(_ type: UInt16, _ value: UInt64) {
        var w = ByteWriter(); w.u64(value); raw(type, w.bytes)
    }

    /// NUL-terminated.
    public mutating func string(_ type: UInt16, _ value: String) { raw(type, Array(value.utf8) + [0]) }

    /// NLA_F_NESTED: attributes inside one attribute.
    public mutating func nested(_ type: UInt16, _ inner: NetlinkAttributes) { raw(type | 0x8000, inner.bytes) }

    mutating func raw(_ type: UInt16, _ value: [UInt8]) {
        var w = ByteWriter()
        w.u16(UInt16(4 + value.count)); w.u16(type)
        bytes += w.bytes + value
        bytes += repeatElement(0, count: (4 - value.count % 4) % 4)
    }
}

extension NetlinkParser {
    /// Each message of `data` that answers request `sequence` (others — a
    /// late answer to an earlier request — are skipped).
    public static func forEachMessage(_ data: ArraySlice<UInt8>, withSequence sequence: UInt32,
                                      _ body: (UInt16, ArraySlice<UInt8>) -> Void) {
        forEachRecord(data, header: 16, length: { le32(data, at: $0) }, typeAt: 4) { header, type, value in
            if le32(header, at: header.startIndex + 8) == sequence { body(type, value) }
        }
    }
}
