import VirtioCore

/// Device side of a packed virtqueue (virtio 1.2 §2.8).
struct PackedDeviceRing {
    let memory: RingMemory
    let geometry: QueueGeometry
    let eventIndex: Bool
    var nextAvail = 0
    var availWrap = true
    var nextUsed = 0
    var usedWrap = true
    /// Used position and wrap at the last interrupt decision.
    var signalledUsed = 0
    var signalledWrap = true

    init(memory: RingMemory, size: Int, eventIndex: Bool) {
        self.memory = memory
        self.geometry = QueueGeometry(layout: .packed, size: size)
        self.eventIndex = eventIndex
    }

    @inline(__always) func desc(_ i: Int) -> Int { 16 * i }

    mutating func pop(into chain: inout DeviceChain) throws(DriverViolation) -> Bool {
        let flags = memory.loadAcquire16(desc(nextAvail) + 14)
        let avail = flags & (1 << 7) != 0, used = flags & (1 << 15) != 0
        guard avail != used, avail == availWrap else { return false }
        chain.removeAll()
        var pos = nextAvail
        var wrap = availWrap
        var count = 0
        while true {
            count += 1
            guard count <= geometry.size else { throw .chainTooLong }
            let off = desc(pos)
            let addr = memory.load64(off), len = memory.load32(off + 8), id = memory.load16(off + 12)
            let f = count == 1 ? flags : memory.load16(off + 14)
            pos += 1
            if pos == geometry.size { pos = 0; wrap.toggle() }
            if f & 4 != 0 {
                guard len % 16 == 0, len >= 16, len / 16 <= 4096 else { throw .badIndirectTable(length: len) }
                guard let slice = memory.translate(deviceAddress: addr, length: len) else {
                    throw .addressOutsideMemory(address: addr, length: len)
                }
                let t = memory.view(slice)
                for i in 0..<Int(len / 16) {
                    let a = t.load64(16 * i), l = t.load32(16 * i + 8), tf = t.load16(16 * i + 14)
                    guard tf & 4 == 0 else { throw .nestedIndirect }
                    guard let s = memory.translate(deviceAddress: a, length: l) else {
                        throw .addressOutsideMemory(address: a, length: l)
                    }
                    chain.append(DeviceSegment(slice: s, isWritable: tf & 2 != 0))
                }
                chain.id = id
                break
            }
            guard let slice = memory.translate(deviceAddress: addr, length: len) else {
                throw .addressOutsideMemory(address: addr, length: len)
            }
            chain.append(DeviceSegment(slice: slice, isWritable: f & 2 != 0))
            if f & 1 == 0 { chain.id = id; break }
        }
        chain.descriptorCount = count
        nextAvail = pos
        availWrap = wrap
        if eventIndex { memory.store16(geometry.deviceAreaOffset, UInt16(nextAvail) | (availWrap ? 0x8000 : 0)) }
        return true
    }

    /// Write a used descriptor (§2.8.7) and make it visible at once (its flags
    /// are its publication). `descriptorCount` is how far the used position moves.
    mutating func push(id: UInt32, length: UInt32, descriptorCount: Int) {
        let off = desc(nextUsed)
        memory.store16(off + 12, UInt16(truncatingIfNeeded: id))
        memory.store32(off + 8, length)
        memory.storeRelease16(off + 14, usedWrap ? (1 << 7 | 1 << 15) : 0)
        nextUsed += max(1, descriptorCount)
        while nextUsed >= geometry.size { nextUsed -= geometry.size; usedWrap.toggle() }
    }

    /// True if the driver wants an interrupt for what was pushed since the
    /// last call (driver event suppression, §2.8.10).
    mutating func commit() -> Bool {
        memory.fullBarrier()
        let oldPos = signalledUsed, oldWrap = signalledWrap
        signalledUsed = nextUsed
        signalledWrap = usedWrap
        if oldPos == nextUsed && oldWrap == usedWrap { return false }
        let flags = memory.loadAcquire16(geometry.driverAreaOffset + 2)
        if flags == 1 { return false }
        guard flags == 2, eventIndex else { return true }
        let offWrap = memory.load16(geometry.driverAreaOffset)
        var event = offWrap & 0x7fff
        if (offWrap >> 15 != 0) != usedWrap { event &-= UInt16(geometry.size) }
        let new = UInt16(nextUsed)
        var old = UInt16(oldPos)
        if oldWrap != usedWrap { old &-= UInt16(geometry.size) }
        return needEvent(event, new: new, old: old)
    }

    func setNotifications(enabled: Bool) {
        if enabled && eventIndex {
            memory.store16(geometry.deviceAreaOffset, UInt16(nextAvail) | (availWrap ? 0x8000 : 0))
            memory.storeRelease16(geometry.deviceAreaOffset + 2, 2)
        } else {
            memory.storeRelease16(geometry.deviceAreaOffset + 2, enabled ? 0 : 1)
        }
    }
}
