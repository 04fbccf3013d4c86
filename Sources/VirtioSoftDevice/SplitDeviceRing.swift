import VirtioCore

/// Device side of a split virtqueue (virtio 1.2 §2.7): reads the descriptor
/// table and available ring, writes the used ring.
struct SplitDeviceRing {
    let memory: RingMemory
    let geometry: QueueGeometry
    let eventIndex: Bool
    let mask: Int
    var lastAvail: UInt16 = 0
    var usedIdx: UInt16 = 0
    var lastSignalled: UInt16 = 0
    var notificationsWanted = true

    init(memory: RingMemory, size: Int, eventIndex: Bool) {
        self.memory = memory
        self.geometry = QueueGeometry(layout: .split, size: size)
        self.eventIndex = eventIndex
        self.mask = size - 1
    }

    var availIdx: Int { geometry.driverAreaOffset + 2 }
    var availFlags: Int { geometry.driverAreaOffset }
    var usedEvent: Int { geometry.driverAreaOffset + 4 + 2 * geometry.size }
    var usedFlags: Int { geometry.deviceAreaOffset }
    var usedIdxOffset: Int { geometry.deviceAreaOffset + 2 }
    var availEvent: Int { geometry.deviceAreaOffset + 4 + 8 * geometry.size }

    mutating func pop(into chain: inout DeviceChain) throws(DriverViolation) -> Bool {
        let idx = memory.loadAcquire16(availIdx)
        if idx == lastAvail { return false }
        if Int(idx &- lastAvail) > geometry.size { throw .availIndexJumped(from: lastAvail, to: idx) }
        let head = memory.load16(geometry.driverAreaOffset + 4 + 2 * (Int(lastAvail) & mask))
        guard Int(head) < geometry.size else { throw .headOutOfRange(head) }
        chain.id = head
        chain.descriptorCount = 1
        chain.removeAll()
        try Self.walk(memory, in: memory, table: geometry.descriptorsOffset, count: geometry.size, first: Int(head),
                      nested: false, into: &chain)
        lastAvail &+= 1
        if eventIndex && notificationsWanted { memory.store16(availEvent, lastAvail) }
        return true
    }

    /// Follow NEXT links through a descriptor table of `count` entries at
    /// `table` in `m`: the ring's own table, or (nested) an indirect one;
    /// addresses are translated through `root`, the queue's memory. Static,
    /// so that calling it from `pop` does not copy the whole ring value
    /// (that copy, and the stalled loads after it, cost a sixth of a round trip).
    @inline(__always)
    static func walk(_ m: RingMemory, in root: RingMemory, table: Int, count: Int, first: Int, nested: Bool,
                     into chain: inout DeviceChain) throws(DriverViolation) {
        var d = first
        var steps = 0
        while true {
            steps += 1
            guard steps <= count else { throw .chainTooLong }
            let off = table + 16 * d
            let addr = m.load64(off), len = m.load32(off + 8), flags = m.load16(off + 12)
            if flags & 4 != 0 {
                guard !nested else { throw .nestedIndirect }
                guard len % 16 == 0, len >= 16, len / 16 <= 4096 else { throw .badIndirectTable(length: len) }
                guard let slice = root.translate(deviceAddress: addr, length: len) else {
                    throw .addressOutsideMemory(address: addr, length: len)
                }
                try walk(root.view(slice), in: root, table: 0, count: Int(len / 16), first: 0, nested: true, into: &chain)
                return
            }
            guard let slice = root.translate(deviceAddress: addr, length: len) else {
                throw .addressOutsideMemory(address: addr, length: len)
            }
            chain.append(DeviceSegment(slice: slice, isWritable: flags & 2 != 0))
            guard flags & 1 != 0 else { return }
            let next = m.load16(off + 14)
            d = Int(next)
            guard d < count else { throw .headOutOfRange(next) }
        }
    }

    /// Write a used entry (not yet visible: `commit()` publishes). Values are
    /// not checked: a test may make the device lie on purpose.
    mutating func push(id: UInt32, length: UInt32) {
        let elem = geometry.deviceAreaOffset + 4 + 8 * (Int(usedIdx) & mask)
        memory.store32(elem, id)
        memory.store32(elem + 4, length)
        usedIdx &+= 1
    }

    /// Publish pushed entries; true if the driver wants an interrupt (§2.7.10).
    mutating func commit() -> Bool {
        memory.storeRelease16(usedIdxOffset, usedIdx)
        memory.fullBarrier()
        let old = lastSignalled
        lastSignalled = usedIdx
        if old == usedIdx { return false }
        if eventIndex { return needEvent(memory.load16(usedEvent), new: usedIdx, old: old) }
        return memory.load16(availFlags) & 1 == 0
    }

    /// Force the used index (hostile-device tests).
    mutating func setUsedIndex(_ v: UInt16) {
        usedIdx = v
        memory.storeRelease16(usedIdxOffset, v)
    }

    /// Ask the driver to notify, or not to while the device polls (§2.7.10).
    /// With event idx, "off" parks avail_event just behind what was consumed,
    /// which the driver passes only after a full 2^16 wrap.
    mutating func setNotifications(enabled: Bool) {
        notificationsWanted = enabled
        if eventIndex {
            memory.store16(availEvent, enabled ? lastAvail : lastAvail &- 1)
        } else {
            memory.store16(usedFlags, enabled ? 0 : 1)
        }
    }
}

