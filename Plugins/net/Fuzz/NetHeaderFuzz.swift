// Fuzz target over the net plugin's check of device-written virtio-net
// headers (virtio 1.2 §5.1.6): whatever a device writes, an accepted header
// asks only for negotiated offloads and keeps its checksum inside the
// frame. `make fuzz` builds this plugin with -DFUZZING, where its main
// runs this under libFuzzer; its tests replay Fuzz/Corpus/.
import FoundationEssentials
import VirtioCore

func fuzzNetHeader(_ data: UnsafeRawBufferPointer) {
    guard data.count >= 15 else { return }
    let b = Array(data)
    // Byte 12 picks the negotiated guest offloads, bytes 13–14 the frame length.
    var raw: UInt64 = 0
    for (i, bit) in [1, 7, 8, 9, 10, 54, 55].enumerated() where b[12] & (1 << i) != 0 { raw |= 1 << UInt64(bit) }
    let negotiated = NetFeatures(rawValue: raw)
    let frame = Int(UInt16(b[13]) | UInt16(b[14]) << 8)
    let region = DMARegion(anonymousSize: 4096)
    region.copy(Array(b[0..<12]), into: DMASlice(offset: 0, length: 12))
    let ok = NetHeader.isAcceptable(in: region, DMASlice(offset: 0, length: 12), frameLength: frame, negotiated: negotiated)
    guard ok else { return }
    let flags = b[0], gso = b[1]
    let start = Int(UInt16(b[6]) | UInt16(b[7]) << 8), offset = Int(UInt16(b[8]) | UInt16(b[9]) << 8)
    if flags & NetHeader.flagNeedsCsum != 0 {
        guard negotiated.contains(.guestCsum), start + offset + 2 <= frame else { fatalError("accepted a checksum outside the frame") }
    }
    if gso & ~NetHeader.gsoECN != NetHeader.gsoNone, !negotiated.contains(.guestTSO4), !negotiated.contains(.guestTSO6),
       !negotiated.contains(.guestUFO), !negotiated.contains(.guestUSO4), !negotiated.contains(.guestUSO6) {
        fatalError("accepted GSO type \(gso) with no guest GSO negotiated")
    }
}
