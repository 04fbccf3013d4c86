import Glibc
import SystemPackage

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
        let index = if_nametoindex(name)
        guard index > 0 else { throw SystemCallError("if_nametoindex \(name)") }
        ifindex = Int32(index)
        fd = try Self.openSocket(groups: 1, blocking: false)
    }

    deinit { try? fd.close() }

    static func openSocket(groups: UInt32, blocking: Bool) throws -> FileDescriptor {
        let type = Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (blocking ? 0 : Int32(SOCK_NONBLOCK.rawValue))
        let raw = socket(AF_NETLINK, type, 0 /* NETLINK_ROUTE */)
        guard raw >= 0 else { throw SystemCallError("socket(AF_NETLINK)") }
        // struct sockaddr_nl: family u16, pad u16, pid u32, groups u32.
        var address = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: UInt16(AF_NETLINK)) { address.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: groups) { address.replaceSubrange(8..<12, with: $0) }
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

    /// Drain pending events; the latest state of this interface, if it changed.
    public func events() -> LinkState? {
        var latest: LinkState?
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd.rawValue, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return latest }
            Self.forEachMessage(buffer[0..<n]) { type, body in
                guard type == Self.rtmNewLink, let s = Self.parseLink(body, ifindex: ifindex) else { return }
                latest = s
            }
        }
    }

    /// The interface's addresses now: IPv4 (4 bytes each) and IPv6 (16 bytes each).
    public func addresses() throws -> (v4: [[UInt8]], v6: [[UInt8]]) {
        let s = try Self.openSocket(groups: 0, blocking: true)
        defer { try? s.close() }
        // nlmsghdr (16) + ifaddrmsg (8): RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP.
        var request = [UInt8](repeating: 0, count: 24)
        func put<T>(_ v: T, at offset: Int) { withUnsafeBytes(of: v) { request.replaceSubrange(offset..<offset + $0.count, with: $0) } }
        put(UInt32(24), at: 0); put(Self.rtmGetAddr, at: 4); put(UInt16(0x301), at: 6); put(UInt32(1), at: 8)
        guard request.withUnsafeBytes({ send(s.rawValue, $0.baseAddress, $0.count, 0) }) == 24 else {
            throw SystemCallError("send RTM_GETADDR")
        }
        var v4: [[UInt8]] = [], v6: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 32768)
        var done = false
        while !done {
            let n = buffer.withUnsafeMutableBytes { recv(s.rawValue, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw SystemCallError("recv RTM_GETADDR") }
            Self.forEachMessage(buffer[0..<n]) { type, body in
                if type == Self.nlmsgDone || type == Self.nlmsgError { done = true; return }
                guard type == Self.rtmNewAddr, body.count >= 8 else { return }
                let family = body[body.startIndex]
                let index = Self.le32(body, at: body.startIndex + 4)
                guard Int32(bitPattern: index) == ifindex else { return }
                Self.forEachAttribute(body.dropFirst(8)) { kind, value in
                    // IFA_LOCAL (2) for IPv4 (IFA_ADDRESS may be the peer), IFA_ADDRESS (1) for IPv6.
                    if family == UInt8(AF_INET), kind == 2, value.count == 4 { v4.append(Array(value)) }
                    if family == UInt8(AF_INET6), kind == 1, value.count == 16 { v6.append(Array(value)) }
                }
            }
        }
        return (v4, v6)
    }

    static func le32(_ b: ArraySlice<UInt8>, at i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    static func le16(_ b: ArraySlice<UInt8>, at i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }

    /// Each netlink message (type, body after the 16-byte header); stops at
    /// a length that does not fit.
    static func forEachMessage(_ data: ArraySlice<UInt8>, _ body: (UInt16, ArraySlice<UInt8>) -> Void) {
        var at = data.startIndex
        while data.endIndex - at >= 16 {
            let length = Int(le32(data, at: at))
            guard length >= 16, length <= data.endIndex - at else { return }
            body(le16(data, at: at + 4), data[(at + 16)..<(at + length)])
            at += (length + 3) & ~3
        }
    }

    /// Each rtattr (type, value); stops at a length that does not fit.
    static func forEachAttribute(_ data: ArraySlice<UInt8>, _ body: (UInt16, ArraySlice<UInt8>) -> Void) {
        var at = data.startIndex
        while data.endIndex - at >= 4 {
            let length = Int(le16(data, at: at))
            guard length >= 4, length <= data.endIndex - at else { return }
            body(le16(data, at: at + 2), data[(at + 4)..<(at + length)])
            at += (length + 3) & ~3
        }
    }

    /// ifinfomsg (16 bytes: family, pad, type u16, index i32, flags u32, change u32) + IFLA_ADDRESS (1).
    static func parseLink(_ body: ArraySlice<UInt8>, ifindex: Int32) -> LinkState? {
        guard body.count >= 16 else { return nil }
        let s = body.startIndex
        guard Int32(bitPattern: le32(body, at: s + 4)) == ifindex else { return nil }
        var state = LinkState(flags: le32(body, at: s + 8), mac: nil)
        forEachAttribute(body.dropFirst(16)) { kind, value in
            if kind == 1, value.count == 6 { state.mac = Array(value) }
        }
        return state
    }

    /// The interface's state now (flags and MAC from sysfs).
    public static func current(_ name: String) -> LinkState? {
        func read(_ file: String) -> String? {
            guard let f = fopen("/sys/class/net/\(name)/\(file)", "r") else { return nil }
            defer { fclose(f) }
            var line = [CChar](repeating: 0, count: 64)
            guard fgets(&line, 64, f) != nil else { return nil }
            return String(cString: line).filter { !$0.isWhitespace }
        }
        guard let flagsText = read("flags"), let flags = UInt32(flagsText.dropFirst(2), radix: 16) else { return nil }
        let mac = read("address").map { $0.split(separator: ":").compactMap { UInt8($0, radix: 16) } }
        return LinkState(flags: flags, mac: mac?.count == 6 ? mac : nil)
    }
}
