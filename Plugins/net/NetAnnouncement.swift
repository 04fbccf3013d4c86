import VirtioCore

/// The frames a driver sends when the device asks it to announce itself
/// (VIRTIO_NET_S_ANNOUNCE after a migration, virtio 1.2 §5.1.6.5.4): a
/// gratuitous ARP request per IPv4 address (RFC 5227 §3, sender = target)
/// and an unsolicited neighbour advertisement per IPv6 address to all nodes
/// (RFC 4861 §7.2.6, override flag set), so switches and neighbours learn
/// where the interface now is.
public enum NetAnnouncement {
    public static func gratuitousARP(mac: [UInt8], ipv4: [UInt8]) -> [UInt8] {
        precondition(mac.count == 6 && ipv4.count == 4)
        var f: [UInt8] = Array(repeating: 0xff, count: 6) + mac + [0x08, 0x06]
        f += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]   // Ethernet/IPv4, request
        f += mac + ipv4 + Array(repeating: 0, count: 6) + ipv4
        return f + Array(repeating: 0, count: max(0, 60 - f.count)) // minimum frame
    }

    public static func unsolicitedNA(mac: [UInt8], ipv6: [UInt8]) -> [UInt8] {
        precondition(mac.count == 6 && ipv6.count == 16)
        let allNodes: [UInt8] = [0xff, 0x02] + Array(repeating: 0, count: 13) + [1]
        // ICMPv6 type 136, code 0, checksum, flags (override), target, option 2 (target link-layer address).
        var icmp: [UInt8] = [136, 0, 0, 0, 0x20, 0, 0, 0] + ipv6 + [2, 1] + mac
        let sum = checksum(pseudoHeader(source: ipv6, destination: allNodes, length: icmp.count, next: 58) + icmp)
        icmp[2] = UInt8(sum >> 8)
        icmp[3] = UInt8(sum & 0xff)
        var f: [UInt8] = [0x33, 0x33, 0, 0, 0, 1] + mac + [0x86, 0xdd]
        f += [0x60, 0, 0, 0, UInt8(icmp.count >> 8), UInt8(icmp.count & 0xff), 58, 255] + ipv6 + allNodes
        return f + icmp
    }

    static func pseudoHeader(source: [UInt8], destination: [UInt8], length: Int, next: UInt8) -> [UInt8] {
        source + destination + [UInt8(length >> 24 & 0xff), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff),
                                UInt8(length & 0xff), 0, 0, 0, next]
    }

    /// The Internet checksum (RFC 1071).
    public static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count { sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]); i += 2 }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
