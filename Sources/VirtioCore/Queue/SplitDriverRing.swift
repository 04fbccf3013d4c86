/// Driver side of a split virtqueue (virtio 1.2 §2.7).
///
/// Descriptor table (§2.7.5), available ring written by the driver (§2.7.6),
/// used ring written by the device (§2.7.8). Free descriptors are linked in a
/// private shadow table (`ShadowTables`), never read back from shared memory.
struct SplitDriverRing {
    /// The queue's cursors and counts; its tables live in `tables`.
    var state: QueueState
    let tables: ShadowTables
    let memory: RingMemory
    let geometry: QueueGeometry
    let mask: Int
    var broken: DeviceViolation?

    // Offsets inside the area.
    var availFlags: Int { geometry.driverAreaOffset }
    var availIdx: Int { geometry.driverAreaOffset + 2 }
    @inline(__always) func availRing(_ i: Int) -> Int { geometry.driverAreaOffset + 4 + 2 * i }
    var usedEvent: Int { geometry.driverAreaOffset + 4 + 2 * geometry.size }
    var usedFlags: Int { geometry.deviceAreaOffset }
    var usedIdx: Int { geometry.deviceAreaOffset + 2 }
    @inline(__always) func usedElem(_ i: Int) -> Int { geometry.deviceAreaOffset + 4 + 8 * i }
    var availEvent: Int { geometry.deviceAreaOffset + 4 + 8 * geometry.size }
    @inline(__always) func desc(_ i: Int) -> Int { geometry.descriptorsOffset + 16 * i }

    /// Takes `state`'s tables into `tables` (see `ShadowTables`); `snapshot`
    /// gives the whole value back.
    init(state: QueueState, memory: RingMemory, tables: ShadowTables) {
        var state = state
        tables.load(from: &state)
        self.state = state
        self.tables = tables
        self.memory = memory
        self.geometry = QueueGeometry(layout: .split, size: state.size, indirectCapacity: state.options.indirectCapacity)
        self.mask = state.size - 1
    }

    @inline(__always)
    mutating func add(_ segments: UnsafeBufferPointer<BufferSegment>, token: UInt64, indirect wantIndirect: Bool) throws(VirtqueueError) {
        if let broken { throw .broken(broken) }
        let n = segments.count
        let (indirect, needed) = try state.admit(count: n, wantIndirect: wantIndirect)

        let head = Int(state.freeHead)
        var capacity: UInt64 = 0
        if indirect {
            // §2.7.5.3.1: the table is a chain of its own, linked 0 → 1 → …
            let table = geometry.indirectTableOffset(head)
            for i in 0..<n {
                let s = segments[i]
                let d = table + 16 * i
                memory.store64(d, s.address)
                memory.store32(d + 8, s.length)
                let more: UInt16 = i + 1 < n ? DescriptorFlag.next : 0
                memory.store16(d + 12, (s.isDeviceWritable ? DescriptorFlag.write : 0) | more)
                memory.store16(d + 14, UInt16(i + 1))
                if s.isDeviceWritable { capacity += UInt64(s.length) }
            }
            memory.store64(desc(head), memory.deviceAddress(table))
            memory.store32(desc(head) + 8, UInt32(16 * n))
            memory.store16(desc(head) + 12, DescriptorFlag.indirect)
            memory.store16(desc(head) + 14, 0)
            state.freeHead = tables.link(head)
        } else {
            var d = head
            for i in 0..<n {
                let s = segments[i]
                memory.store64(desc(d), s.address)
                memory.store32(desc(d) + 8, s.length)
                let more: UInt16 = i + 1 < n ? DescriptorFlag.next : 0
                memory.store16(desc(d) + 12, (s.isDeviceWritable ? DescriptorFlag.write : 0) | more)
                memory.store16(desc(d) + 14, tables.link(d))
                if s.isDeviceWritable { capacity += UInt64(s.length) }
                if i + 1 < n { d = Int(tables.link(d)) }
            }
            state.freeHead = tables.link(d)
        }
        state.freeDescriptors -= needed
        tables.setChain(head, ChainRecord(token: token, descriptorCount: UInt16(needed), writableCapacity: capacity, inFlight: true))
        state.inFlightChains += 1
        memory.store16(availRing(Int(state.nextAvail) & mask), UInt16(head))
        state.nextAvail &+= 1
        state.addedSincePublish &+= 1
    }

    /// Make added chains visible (§2.7.13.3) and decide whether to notify (§2.7.13.4).
    @inline(__always)
    mutating func publish() -> Bool {
        guard state.addedSincePublish > 0 else { return false }
        let new = state.nextAvail
        let old = new &- state.addedSincePublish
        state.addedSincePublish = 0
        memory.storeRelease16(availIdx, new)
        memory.fullBarrier()
        if state.options.eventIndex {
            return needEvent(memory.load16(availEvent), new: new, old: old)
        }
        return memory.load16(usedFlags) & SplitFlag.usedNoNotify == 0
    }

    /// Next used chain, checked (§2.7.14); nil if none.
    @inline(__always)
    mutating func popUsed() throws(VirtqueueError) -> UsedBuffer? {
        if let broken { throw .broken(broken) }
        var deviceIdx = memory.loadAcquire16(usedIdx)
        let last = state.nextUsed
        if deviceIdx == last {
            // used_event was stored after the last pop (§2.7.10). A chain the
            // device returned before it saw that store raised no interrupt,
            // so look once more behind a full barrier: either this load sees
            // the device's used index, or the device sees our used_event.
            guard state.options.eventIndex, state.interruptsEnabled, state.inFlightChains > 0 else { return nil }
            memory.fullBarrier()
            deviceIdx = memory.loadAcquire16(usedIdx)
            if deviceIdx == last { return nil }
        }
        let pending = Int(deviceIdx &- last)
        if pending > state.inFlightChains {
            throw fail(.usedIndexJumped(from: last, to: deviceIdx, inFlight: state.inFlightChains))
        }
        let elem = usedElem(Int(last) & mask)
        let id = memory.load32(elem)
        let length = memory.load32(elem + 4)
        let chain: ChainRecord, exceeded: Bool
        do {
            (chain, exceeded) = try tables.checkUsed(id: id, length: length,
                                                     tolerateOversized: state.options.tolerateOversizedLength)
        } catch { throw fail(error) }
        let head = Int(id)
        // Return the chain's descriptors to the free list (walk the shadow links).
        var tail = head
        for _ in 1..<Int(chain.descriptorCount) { tail = Int(tables.link(tail)) }
        tables.setLink(tail, state.freeHead)
        state.freeHead = UInt16(head)
        state.freeDescriptors += Int(chain.descriptorCount)
        tables.markReturned(head)
        state.inFlightChains -= 1
        state.nextUsed = last &+ 1
        if state.options.eventIndex && state.interruptsEnabled {
            memory.store16(usedEvent, state.nextUsed)
        }
        return UsedBuffer(token: chain.token, length: exceeded ? 0 : length, id: UInt16(head), lengthExceeded: exceeded)
    }

    /// The whole queue state, tables included (for a hand-over).
    var snapshot: QueueState { tables.attach(to: state) }

    mutating func fail(_ v: DeviceViolation) -> VirtqueueError {
        broken = v
        return .broken(v)
    }

    /// Ask for interrupts again (§2.7.10); true if used chains arrived meanwhile.
    mutating func enableInterrupts() -> Bool {
        state.interruptsEnabled = true
        if state.options.eventIndex {
            memory.store16(usedEvent, state.nextUsed)
        } else {
            memory.store16(availFlags, 0)
        }
        memory.fullBarrier()
        return memory.loadAcquire16(usedIdx) != state.nextUsed
    }

    mutating func disableInterrupts() {
        state.interruptsEnabled = false
        if !state.options.eventIndex {
            memory.store16(availFlags, SplitFlag.availNoInterrupt)
        }
    }

    var hasUsed: Bool { memory.loadAcquire16(usedIdx) != state.nextUsed }
}
