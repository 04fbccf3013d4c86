import Testing
import VirtioCore
@testable import virtiod_net

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

/// The same checks read from DMA memory, as the net plugin does.
@Suite struct NetHeaderInMemoryTests {
    @Test func readsTheHeaderFromTheBufferAndRefusesShortOnes() {
        let region = DMARegion(anonymousSize: 4096)
        let buffer = DMASlice(offset: 128, length: 64)
        // flags NEEDS_CSUM, gso TCPv4, csum_start 34, csum_offset 16, num_buffers 3
        region.copy([1, 1, 0, 0, 0, 0, 34, 0, 16, 0, 3, 0], into: buffer)
        #expect(region.loadLE16(buffer, at: NetHeader.numBuffersOffset) == 3)
        #expect(NetHeader.isAcceptable(in: region, buffer, frameLength: 9000, negotiated: [.guestCsum, .guestTSO4]))
        #expect(!NetHeader.isAcceptable(in: region, buffer, frameLength: 9000, negotiated: [.guestCsum]))
        #expect(!NetHeader.isAcceptable(in: region, DMASlice(offset: 128, length: 8), frameLength: 9000,
                                        negotiated: [.guestCsum, .guestTSO4]), "a buffer shorter than a header")
        region.storeLE16(0, buffer, at: NetHeader.numBuffersOffset)
        #expect(region.bytes(buffer, count: 12).suffix(2) == [0, 0])
    }
}
