import Glibc
import SystemPackage
import VirtioCore

/// rtnetlink (NETLINK_ROUTE) for one network interface: change events
/// (RTMGRP_LINK: flags such as IFF_PROMISC, the MAC address) and a dump of
/// its IPv4/IPv6 addresses. The net plugin mirrors what the user does to
/// its TAP interface onto the device's receive filter (virtio 1.2 §5.1.6.5.1,
/// §5.1.6.5.2) and announces the addresses after a migration (§5.1.6.5.4).
/// Needs no privilege. Netlink messages come from the kernel, but every
/// length in them is still checked before use.
public final class LinkMonitor {
    public let fd: FileDescriptor
    public let ifindex: Int32

    public struct LinkState: Equatable, Sendable {
        public var flags: UInt32
        public var mac: [UInt8]?
        public var promiscuous: Bool { flags & UInt32(IFF_PROMISC) != 0 }
        public var allMulticast: Bool { flags & UInt32(IFF_ALLMULTI) != 0 }
    }

    static let rtmNewLink: UInt16 = 16, rtmNewAddr: UInt16 = 20, rtmGetAddr: UInt16 = 22
    static let nlmsgDone: UInt16 = 3, nlmsgError: UInt16 = 2

    /// Watch interface `name` (RTMGRP_LINK events on a non-blocking socket).
    public init(interface name: String) throws {
        // From sysfs, not if_nametoindex(3): that needs an AF_UNIX or AF_INET
        // socket, which a plugin's sandbox may not allow (only AF_NETLINK).
        guard let text = TextFile.read("/sys/class/net/\(name)/ifindex"), let index = Int32(text), index > 0 else {
            throw SystemCallError("no interface \(name) in /sys/class/net", .noSuchFileOrDirectory)
        }
        ifindex = index
        fd = try NetlinkSocket.open(groups: 1, blocking: false)
    }

    deinit { try? fd.close() }

    /// Drain pending events; true if this interface may have changed (a
    /// link message for it, or an overrun that lost some): then read its
    /// state with `current`.
    public func events() -> Bool {
        var changed = false
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd.rawValue, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == ENOBUFS { changed = true; continue }
            guard n > 0 else { return changed }
            NetlinkParser.forEachMessage(buffer[0..<n]) { type, body in
                // ifinfomsg: family u8, pad u8, type u16, index i32, …
                if type == Self.rtmNewLink, body.count >= 8,
                   Int32(bitPattern: NetlinkParser.le32(body, at: body.startIndex + 4)) == ifindex { changed = true }
            }
        }
    }

    /// The interface's addresses now: IPv4 (4 bytes each) and IPv6 (16 bytes each).
    public func addresses() throws -> (v4: [[UInt8]], v6: [[UInt8]]) {
        let s = try NetlinkSocket.open(groups: 0, blocking: true)
        defer { try? s.close() }
        // nlmsghdr (length, type, flags NLM_F_REQUEST | NLM_F_DUMP, seq, pid) + ifaddrmsg (8 bytes, all families).
        var w = ByteWriter()
        w.u32(24); w.u16(Self.rtmGetAddr); w.u16(0x301); w.u32(1); w.u32(0); w.zeros(8)
        let request = w.bytes
        guard request.withUnsafeBytes({ send(s.rawValue, $0.baseAddress, $0.count, 0) }) == 24 else {
            throw SystemCallError("send RTM_GETADDR")
        }
        var v4: [[UInt8]] = [], v6: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 32768)
        var done = false
        while !done {
            let n = buffer.withUnsafeMutableBytes { recv(s.rawValue, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw SystemCallError("recv RTM_GETADDR") }
            NetlinkParser.forEachMessage(buffer[0..<n]) { type, body in
                if type == Self.nlmsgDone || type == Self.nlmsgError { done = true; return }
                guard type == Self.rtmNewAddr, body.count >= 8 else { return }
                let family = body[body.startIndex]
                let index = NetlinkParser.le32(body, at: body.startIndex + 4)
                guard Int32(bitPattern: index) == ifindex else { return }
                NetlinkParser.forEachAttribute(body.dropFirst(8)) { kind, value in
                    // IFA_LOCAL (2) for IPv4 (IFA_ADDRESS may be the peer), IFA_ADDRESS (1) for IPv6.
                    if family == UInt8(AF_INET), kind == 2, value.count == 4 { v4.append(Array(value)) }
                    if family == UInt8(AF_INET6), kind == 1, value.count == 16 { v6.append(Array(value)) }
                }
            }
        }
        return (v4, v6)
    }

    /// The interface's state now, from sysfs: its flags are the kernel's own
    /// (they include promiscuity a bridge asked for, which netlink's do not).
    public static func current(_ name: String) -> LinkState? {
        guard let flagsText = TextFile.read("/sys/class/net/\(name)/flags"), flagsText.hasPrefix("0x"),
              let flags = UInt32(flagsText.dropFirst(2), radix: 16) else { return nil }
        let mac = TextFile.read("/sys/class/net/\(name)/address").map { $0.split(separator: ":").compactMap { UInt8($0, radix: 16) } }
        return LinkState(flags: flags, mac: mac?.count == 6 ? mac : nil)
    }
}

/// A netlink socket, bound (port chosen by the kernel) to `groups`:
/// NETLINK_ROUTE (0) by default, NETLINK_GENERIC (16) for generic families.
enum NetlinkSocket {
    static func open(protocol family: Int32 = 0, groups: UInt32, blocking: Bool) throws -> FileDescriptor {
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (blocking ? 0 : Int32(SOCK_NONBLOCK.rawValue))
        let raw = socket(AF_NETLINK, type, family)
        guard raw >= 0 else { throw SystemCallError("socket(AF_NETLINK, \(family))") }
        // struct sockaddr_nl: family u16, pad u16, pid u32, groups u32.
        var w = ByteWriter()
        w.u16(UInt16(AF_NETLINK)); w.u16(0); w.u32(0); w.u32(groups)
        let address = w.bytes
        // SAFETY: the 12 bytes are a complete struct sockaddr_nl, laid out by
        // hand above; bind reads exactly the length given and keeps no pointer.
        let rc = address.withUnsafeBytes { bind(raw, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), 12) }
        guard rc == 0 else {
            let e = SystemCallError("bind(AF_NETLINK)")
            close(raw)
            throw e
        }
        return FileDescriptor(rawValue: raw)
    }
}

/// The one walker of netlink messages (nlmsghdr) and route attributes
/// (rtattr): length-prefixed, 4-byte-aligned records, every length checked
/// against what is left before it is used (fuzzed by virtiod-fuzz netlink).
public enum NetlinkParser {
    public static func le32(_ b: ArraySlice<UInt8>, at i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    public static func le16(_ b: ArraySlice<UInt8>, at i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }

    /// Each netlink message (type, body after the 16-byte nlmsghdr: length
    /// u32, type u16, …); stops at a length that does not fit.
    public static func forEachMessage(_ data: ArraySlice<UInt8>, _ body: (UInt16, ArraySlice<UInt8>) -> Void) {
        forEachRecord(data, header: 16, length: { le32(data, at: $0) }, typeAt: 4) { body($1, $2) }
    }

    /// Each rtattr (type, value after the 4-byte header: length u16, type u16);
    /// stops at a length that does not fit.
    public static func forEachAttribute(_ data: ArraySlice<UInt8>, _ body: (UInt16, ArraySlice<UInt8>) -> Void) {
        forEachRecord(data, header: 4, length: { UInt32(le16(data, at: $0)) }, typeAt: 2) { body($1, $2) }
    }

    /// The length-prefixed, 4-byte-aligned records both formats are made
    /// of: every length is checked against what is left before it is used.
    static func forEachRecord(_ data: ArraySlice<UInt8>, header: Int, length: (Int) -> UInt32, typeAt: Int,
                                      _ body: (_ header: ArraySlice<UInt8>, UInt16, ArraySlice<UInt8>) -> Void) {
        var at = data.startIndex
        while data.endIndex - at >= header {
            let n = Int(length(at))
            guard n >= header, n <= data.endIndex - at else { return }
            body(data[at..<(at + header)], le16(data, at: at + typeAt), data[(at + header)..<(at + n)])
            at += (n + 3) & ~3
        }
    }

}
