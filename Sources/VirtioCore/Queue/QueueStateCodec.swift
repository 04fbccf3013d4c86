public enum QueueStateError: Error, Sendable, Hashable, CustomStringConvertible {
    case notAQueueState
    case unsupportedVersion(UInt32)
    case truncated(needed: Int, have: Int)
    case checksumMismatch
    case inconsistent(String)

    public var description: String {
        switch self {
        case .notAQueueState: "not a queue state record (bad magic)"
        case .unsupportedVersion(let v): "queue state version \(v) is newer than this build understands"
        case .truncated(let n, let h): "queue state truncated: \(n) bytes needed, \(h) present"
        case .checksumMismatch: "queue state checksum mismatch (torn or overwritten)"
        case .inconsistent(let why): "queue state inconsistent: \(why)"
        }
    }
}

/// Binary form of `QueueState`, little-endian, for a state area in shared
/// memory. Layout (version 1):
///
///     magic "VQS1" u32 | version u32 | payload length u32 | FNV-1a-32 of payload u32
///     payload: layout u8, avail wrap u8, used wrap u8, interrupts u8,
///              size u32, area offset u64, area length u64,
///              event idx u8, tolerate oversized length u8, pad u8×2, indirect capacity u32,
///              next avail u16, added u16, next used u16, free head u16,
///              free descriptors u32, in-flight chains u32,
///              links u16×size,
///              chains × size: token u64, capacity u64, count u16, in flight u8, pad u8×5
///
/// A reader rejects unknown versions, short records, bad checksums and
/// states that fail `QueueState.inconsistency()`; it never guesses.
public enum QueueStateCodec {
    public static let magic: UInt32 = 0x3153_5156 // "VQS1"
    public static let version: UInt32 = 1
    static let headerLength = 16

    public static func encodedLength(size: Int) -> Int { headerLength + 48 + 2 * size + 24 * size }

    public static func encode(_ s: QueueState) -> [UInt8] {
        var w = ByteWriter()
        w.u8(s.layout.rawValue); w.u8(s.availWrap ? 1 : 0); w.u8(s.usedWrap ? 1 : 0); w.u8(s.interruptsEnabled ? 1 : 0)
        w.u32(UInt32(s.size)); w.u64(UInt64(s.area.offset)); w.u64(UInt64(s.area.length))
        w.u8(s.options.eventIndex ? 1 : 0); w.u8(s.options.tolerateOversizedLength ? 1 : 0); w.u8(0); w.u8(0)
        w.u32(UInt32(s.options.indirectCapacity))
        w.u16(s.nextAvail); w.u16(s.addedSincePublish); w.u16(s.nextUsed); w.u16(s.freeHead)
        w.u32(UInt32(s.freeDescriptors)); w.u32(UInt32(s.inFlightChains))
        for l in s.links { w.u16(l) }
        for c in s.chains {
            w.u64(c.token); w.u64(c.writableCapacity); w.u16(c.descriptorCount); w.u8(c.inFlight ? 1 : 0)
            for _ in 0..<5 { w.u8(0) }
        }
        var h = ByteWriter()
        h.u32(magic); h.u32(version); h.u32(UInt32(w.bytes.count)); h.u32(fnv1a(w.bytes))
        return h.bytes + w.bytes
    }

    public static func decode(_ bytes: some Collection<UInt8>) throws(QueueStateError) -> QueueState {
        let b = Array(bytes)
        guard b.count >= headerLength else { throw .truncated(needed: headerLength, have: b.count) }
        var r = ByteReader(bytes: b)
        guard r.u32() == magic else { throw .notAQueueState }
        let v = r.u32()
        guard v == version else { throw .unsupportedVersion(v) }
        let length = Int(r.u32())
        let sum = r.u32()
        guard b.count - headerLength >= length else { throw .truncated(needed: headerLength + length, have: b.count) }
        let payload = Array(b[headerLength..<headerLength + length])
        guard fnv1a(payload) == sum else { throw .checksumMismatch }
        var p = ByteReader(bytes: payload)
        guard length >= 48 else { throw .truncated(needed: 48, have: length) }
        guard let layout = RingLayout(rawValue: p.u8()) else { throw .inconsistent("unknown ring layout") }
        let availWrap = p.u8() != 0, usedWrap = p.u8() != 0, interrupts = p.u8() != 0
        let size = Int(p.u32())
        guard size >= 1, size <= QueueGeometry.maxSize else { throw .inconsistent("queue size \(size) out of range") }
        guard length == 48 + 26 * size else { throw .truncated(needed: 48 + 26 * size, have: length) }
        let areaOffset = p.u64(), areaLength = p.u64()
        guard areaOffset < 1 << 48, areaLength < 1 << 48 else { throw .inconsistent("queue area out of range") }
        let eventIndex = p.u8() != 0
        let tolerate = p.u8() != 0
        _ = (p.u8(), p.u8())
        let indirect = Int(p.u32())
        guard indirect <= 4096 else { throw .inconsistent("indirect capacity \(indirect) out of range") }
        var s = QueueState(layout: layout, size: size, area: DMASlice(offset: Int(areaOffset), length: Int(areaLength)),
                           options: QueueOptions(eventIndex: eventIndex, indirectCapacity: indirect,
                                                 tolerateOversizedLength: tolerate))
        s.availWrap = availWrap; s.usedWrap = usedWrap; s.interruptsEnabled = interrupts
        s.nextAvail = p.u16(); s.addedSincePublish = p.u16(); s.nextUsed = p.u16(); s.freeHead = p.u16()
        s.freeDescriptors = Int(p.u32()); s.inFlightChains = Int(p.u32())
        for i in 0..<size { s.links[i] = p.u16() }
        for i in 0..<size {
            let token = p.u64(), capacity = p.u64(), count = p.u16(), inFlight = p.u8() != 0
            for _ in 0..<5 { _ = p.u8() }
            s.chains[i] = ChainRecord(token: token, descriptorCount: count, writableCapacity: capacity, inFlight: inFlight)
        }
        if let why = s.inconsistency() { throw .inconsistent(why) }
        return s
    }

    public static func fnv1a(_ bytes: [UInt8]) -> UInt32 {
        var h: UInt32 = 0x811c_9dc5
        for b in bytes { h = (h ^ UInt32(b)) &* 0x0100_0193 }
        return h
    }
}
