import Testing
import VirtioCore

/// Which receive headers a virtio-net device may write (virtio 1.2 §5.1.6.4):
/// anything else is a lying device and costs the packet.
@Suite struct NetHeaderTests {
    let all: NetFeatures = [.guestCsum, .guestTSO4, .guestTSO6, .guestECN]

    func ok(_ flags: UInt8, _ gso: UInt8, start: UInt16 = 0, offset: UInt16 = 0, frame: Int = 1514,
            _ features: NetFeatures) -> Bool {
        NetHeader.isAcceptable(flags: flags, gsoType: gso, csumStart: start, csumOffset: offset,
                               frameLength: frame, negotiated: features)
    }

    @Test func plainAndValidatedFramesAlwaysPass() {
        #expect(ok(0, NetHeader.gsoNone, []))
        #expect(ok(NetHeader.flagDataValid, NetHeader.gsoNone, []))
    }

    @Test func offloadsOnlyWhenNegotiated() {
        #expect(!ok(NetHeader.flagNeedsCsum, 0, start: 34, offset: 16, []))
        #expect(ok(NetHeader.flagNeedsCsum, 0, start: 34, offset: 16, all))
        #expect(!ok(NetHeader.flagNeedsCsum, NetHeader.gsoTCPv4, start: 34, offset: 16, [.guestCsum]))
        #expect(ok(NetHeader.flagNeedsCsum, NetHeader.gsoTCPv4, start: 34, offset: 16, frame: 65000, all))
        #expect(!ok(0, NetHeader.gsoTCPv4 | NetHeader.gsoECN, [.guestCsum, .guestTSO4]))
        #expect(!ok(0, NetHeader.gsoUDP, all))
    }

    @Test func malformedHeadersFail() {
        #expect(!ok(0x80, 0, all), "unknown flag")
        #expect(!ok(0, 9, all), "unknown GSO type")
        // The checksum field would lie beyond the frame.
        #expect(!ok(NetHeader.flagNeedsCsum, 0, start: 1500, offset: 16, frame: 1514, all))
    }
}
