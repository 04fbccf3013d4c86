import Testing
import VirtioCore
@testable import virtiod_net

@Suite struct NetAnnouncementTests {
    let mac: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x01]

    @Test func gratuitousARPNamesItselfAsSenderAndTarget() {
        let f = NetAnnouncement.gratuitousARP(mac: mac, ipv4: [10, 77, 0, 1])
        #expect(f.count == 60)
        #expect(Array(f[0..<6]) == Array(repeating: 0xff, count: 6) && Array(f[6..<12]) == mac)
        #expect(f[12] == 0x08 && f[13] == 0x06 && f[21] == 1)          // ARP request
        #expect(Array(f[28..<32]) == [10, 77, 0, 1] && Array(f[38..<42]) == [10, 77, 0, 1])
    }

    @Test func neighbourAdvertisementChecksumVerifies() {
        let ip: [UInt8] = [0xfd, 0x77] + Array(repeating: 0, count: 13) + [1]
        let f = NetAnnouncement.unsolicitedNA(mac: mac, ipv6: ip)
        #expect(f.count == 14 + 40 + 32)
        #expect(Array(f[0..<6]) == [0x33, 0x33, 0, 0, 0, 1] && f[20] == 58 && f[21] == 255)
        let icmp = Array(f[54...])
        #expect(icmp[0] == 136 && icmp[4] == 0x20 && Array(icmp[8..<24]) == ip && Array(icmp[26..<32]) == mac)
        // Summing pseudo-header + ICMPv6 with its checksum in place gives 0.
        let pseudo = Array(f[22..<38]) + Array(f[38..<54]) + [0, 0, 0, 32, 0, 0, 0, 58]
        #expect(NetAnnouncement.checksum(pseudo + icmp) == 0)
        // A known vector (RFC 1071 §3 example bytes).
        #expect(NetAnnouncement.checksum([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]) == ~UInt16(0xddf2))
    }
}
