import Testing
import VirtioPCI

/// Capability walks over PCI config spaces built by hand: what QEMU's
/// virtio-pci presents, and what a lying device could present.
@Suite struct PCICapabilityTests {
    /// A 256-byte config space with the capability list at 0x40 and these capabilities.
    func space(_ caps: [[UInt8]], statusCapList: Bool = true) -> [UInt8] {
        var c = [UInt8](repeating: 0, count: 256)
        c[0] = 0xf4; c[1] = 0x1a; c[2] = 0x42; c[3] = 0x10
        c[6] = statusCapList ? 0x10 : 0
        c[0x34] = caps.isEmpty ? 0 : 0x40
        var at = 0x40
        for (i, cap) in caps.enumerated() {
            for (j, b) in cap.enumerated() { c[at + j] = b }
            let next = i == caps.count - 1 ? 0 : at + ((cap.count + 3) & ~3)
            c[at + 1] = UInt8(next)
            at = next
        }
        return c
    }

    func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    /// struct virtio_pci_cap (§4.1.4): vndr 0x09, next, len, cfg_type, bar, id, pad, offset, length.
    func virtio(_ type: UInt8, bar: UInt8, offset: UInt32, length: UInt32, extra: [UInt8] = []) -> [UInt8] {
        [0x09, 0, UInt8(16 + extra.count), type, bar, 0, 0, 0] + le32(offset) + le32(length) + extra
    }

    var qemuLike: [[UInt8]] {
        [
            [0x11, 0, 0x02, 0x00] + le32(1) + le32(0x801), // MSI-X, 3 vectors, table in BAR 1
            virtio(1, bar: 4, offset: 0, length: 0x38),
            virtio(3, bar: 4, offset: 0x1000, length: 0x1000),
            virtio(4, bar: 4, offset: 0x2000, length: 0x1000),
            virtio(2, bar: 4, offset: 0x3000, length: 0x1000, extra: le32(4)),
            virtio(5, bar: 0, offset: 0, length: 0, extra: le32(0)),
        ]
    }

    @Test func parsesWhatQEMUPresents() throws {
        let caps = try VirtioPCICapabilities.parse(config: space(qemuLike))
        #expect(caps.common == VirtioStructureLocation(bar: 4, offset: 0, length: 0x38))
        #expect(caps.isr.offset == 0x1000 && caps.device?.offset == 0x2000)
        #expect(caps.notify.offset == 0x3000 && caps.notifyOffsetMultiplier == 4)
        #expect(caps.msixTableSize == 3)
        #expect(caps.pciConfigAccess != nil)
    }

    @Test func missingStructuresAreNamed() {
        let noNotify = qemuLike.filter { !($0[0] == 0x09 && $0[3] == 2) }
        #expect(throws: PCICapabilityError.missing("notification")) { try VirtioPCICapabilities.parse(config: space(noNotify)) }
        #expect(throws: PCICapabilityError.noCapabilityList) {
            try VirtioPCICapabilities.parse(config: space(qemuLike, statusCapList: false))
        }
    }

    @Test func aLoopingListEnds() {
        var c = space(qemuLike)
        c[0x41] = 0x40 // the first capability points at itself
        #expect(throws: PCICapabilityError.self) { try VirtioPCICapabilities.parse(config: c) }
    }

    @Test func lyingCapabilitiesAreRejected() {
        var badBar = qemuLike
        badBar[1] = virtio(1, bar: 7, offset: 0, length: 0x38)
        #expect(throws: PCICapabilityError.malformed("virtio structure in BAR 7")) { try VirtioPCICapabilities.parse(config: space(badBar)) }

        var shortCommon = qemuLike
        shortCommon[1] = virtio(1, bar: 4, offset: 0, length: 8)
        #expect(throws: PCICapabilityError.self) { try VirtioPCICapabilities.parse(config: space(shortCommon)) }

        var pointerIntoHeader = space(qemuLike)
        pointerIntoHeader[0x34] = 0x10
        #expect(throws: PCICapabilityError.self) { try VirtioPCICapabilities.parse(config: pointerIntoHeader) }

        var shortCap = qemuLike
        shortCap[1] = [0x09, 0, 8, 1, 4, 0, 0, 0]
        #expect(throws: PCICapabilityError.self) { try VirtioPCICapabilities.parse(config: space(shortCap)) }

        // A pointer past the end of what was read is an error, not a crash.
        var truncated = space(qemuLike)
        truncated[0x34] = 0xfc
        truncated[0xfc] = 0x09
        truncated[0xfe] = 16
        #expect(throws: PCICapabilityError.self) { try VirtioPCICapabilities.parse(config: truncated) }
    }
}
