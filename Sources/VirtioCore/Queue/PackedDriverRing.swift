/// Driver side of a packed virtqueue (virtio 1.2 §2.8).
///
/// One descriptor ring both sides write (§2.8.1: AVAIL/USED flag bits against
/// wrap counters), a driver event suppression area the driver writes and a
/// device event suppression area the device writes (§2.8.10). Buffer IDs come
/// from a private free list (`ShadowTables`); the descriptor count of each
/// chain is the driver's own record, never the device's word.
struct PackedDriverRing {
    /// The queue's cursors and counts; its tables live in `tables`.
    var state: QueueState
    let tables: ShadowTables
    let memory: RingMemory
    let geometry: QueueGeometry
    var broken: DeviceViolation?

    @inline(__always) func desc(_ i: Int) -> Int { geometry.descriptorsOffset + 16 * i }
    var driverEventOffWrap: Int { geometry.driverAreaOffset }
    var driverEventFlags: Int { geometry.driverAreaOffset + 2 }
    var deviceEventOffWrap: Int { geometry.deviceAreaOffset }
    var deviceEventFlags: Int { geometry.deviceAreaOffset + 2 }

    /// Takes `state`'s tables into `tables` (see `ShadowTables`); `snapshot`
    /// gives the whole value back.
    init(state: QueueState, memory: RingMemory, tables: ShadowTables) {
        var state = state
        tables.load(from: &state)
        self.state = state
        self.tables = tables
        self.memory = memory
        self.geometry = QueueGeometry(layout: .packed, size: state.size, indirectCapacity: state.options.indirectCapacity)
    }

    @inline(__always)
    func availFlags(_ wrap: Bool) -> UInt16 { wrap ? DescriptorFlag.avail : DescriptorFlag.used }

    @inline(__always)
    mutating func add(_ segments: UnsafeBufferPointer<BufferSegment>, token: UInt64, indirect wantIndirect: Bool) throws(VirtqueueError) {
        if let broken { throw .broken(broken) }
        let n = segments.count
        let (indirect, needed) = try state.admit(count: n, wantIndirect: wantIndirect)
        // A free slot implies a free ID: in-flight chains ≤ used slots < size.
        let id = Int(state.freeHead)
        state.freeHead = tables.link(id)

        let headPos = Int(state.nextAvail)
        let headWrap = state.availWrap
        var headFlags: UInt16
        var capacity: UInt64 = 0
        if indirect {
            // §2.8.19: a table of packed descriptors; only WRITE is meaningful in it.
            let table = geometry.indirectTableOffset(id)
            for i in 0..<n {
                let s = segments[i]
                let d = table + 16 * i
                memory.store64(d, s.address)
                memory.store32(d + 8, s.length)
                memory.store16(d + 12, 0)
                memory.store16(d + 14, s.isDeviceWritable ? DescriptorFlag.write : 0)
                if s.isDeviceWritable { capacity += UInt64(s.length) }
            }
            memory.store64(desc(headPos), memory.deviceAddress(table))
            memory.store32(desc(headPos) + 8, UInt32(16 * n))
            memory.store16(desc(headPos) + 12, UInt16(id))
            headFlags = DescriptorFlag.indirect | availFlags(headWrap)
            advance(&state.nextAvail, &state.availWrap, by: 1)
        } else {
            headFlags = 0
            var pos = headPos
            var wrap = headWrap
            for i in 0..<n {
                let s = segments[i]
                memory.store64(desc(pos), s.address)
                memory.store32(desc(pos) + 8, s.length)
                memory.store16(desc(pos) + 12, UInt16(id))
                let more: UInt16 = i + 1 < n ? DescriptorFlag.next : 0
                let flags = (s.isDeviceWritable ? DescriptorFlag.write : 0) | more | availFlags(wrap)
                if s.isDeviceWritable { capacity += UInt64(s.length) }
                // §2.8.21.1: the head's flags are written last, after every other descriptor.
                if i == 0 { headFlags = flags } else { memory.store16(desc(pos) + 14, flags) }
                pos += 1
                if pos == state.size { pos = 0; wrap.toggle() }
            }
            state.nextAvail = UInt16(pos)
            state.availWrap = wrap
        }
        state.freeDescriptors -= needed
        tables.setChain(id, ChainRecord(token: token, descriptorCount: UInt16(needed), writableCapacity: capacity, inFlight: true))
        state.inFlightChains += 1
        state.addedSincePublish &+= UInt16(needed)
        memory.storeRelease16(desc(headPos) + 14, headFlags)
    }

    @inline(__always)
    func advance(_ pos: inout UInt16, _ wrap: inout Bool, by n: Int) {
        var p = Int(pos) + n
        if p >= state.size { p -= state.size; wrap.toggle() }
        pos = UInt16(p)
    }

    /// Decide whether to notify (§2.8.10, §2.8.22): chains are already visible.
    @inline(__always)
    mutating func publish() -> Bool {
        guard state.addedSincePublish > 0 else { return false }
        let added = state.addedSincePublish
        state.addedSincePublish = 0
        memory.fullBarrier()
        let flags = memory.loadAcquire16(deviceEventFlags)
        guard flags == PackedEventFlag.desc, state.options.eventIndex else {
            return flags != PackedEventFlag.disable
        }
        let offWrap = memory.load16(deviceEventOffWrap)
        var event = offWrap & 0x7fff
        if (offWrap >> 15 != 0) != state.availWrap { event &-= UInt16(state.size) }
        let new = state.nextAvail
        return needEvent(event, new: new, old: new &- added)
    }

    /// Next used buffer, checked (§2.8.6, §2.8.23); nil if none.
    @inline(__always)
    mutating func popUsed() throws(VirtqueueError) -> UsedBuffer? {
        if let broken { throw .broken(broken) }
        let pos = desc(Int(state.nextUsed))
        func returned(_ flags: UInt16) -> Bool {
            let used = flags & DescriptorFlag.used != 0
            return (flags & DescriptorFlag.avail != 0) == used && used == state.usedWrap
        }
        if !returned(memory.loadAcquire16(pos + 14)) {
            // The driver event was stored after the last pop (§2.8.10): look
            // once more behind a full barrier, as the split ring does.
            guard state.options.eventIndex, state.interruptsEnabled, state.inFlightChains > 0 else { return nil }
            memory.fullBarrier()
            guard returned(memory.loadAcquire16(pos + 14)) else { return nil }
        }
        let id = UInt32(memory.load16(pos + 12))
        let length = memory.load32(pos + 8)
        let chain: ChainRecord, exceeded: Bool
        do {
            (chain, exceeded) = try tables.checkUsed(id: id, length: length,
                                                     tolerateOversized: state.options.tolerateOversizedLength)
        } catch { throw fail(error) }
        advance(&state.nextUsed, &state.usedWrap, by: Int(chain.descriptorCount))
        state.freeDescriptors += Int(chain.descriptorCount)
        tables.markReturned(Int(id))
        state.inFlightChains -= 1
        tables.setLink(Int(id), state.freeHead)
        state.freeHead = UInt16(id)
        if state.options.eventIndex && state.interruptsEnabled {
            memory.store16(driverEventOffWrap, offWrap(state.nextUsed, state.usedWrap))
        }
        return UsedBuffer(token: chain.token, length: exceeded ? 0 : length, id: UInt16(id), lengthExceeded: exceeded)
    }

    func offWrap(_ pos: UInt16, _ wrap: Bool) -> UInt16 { pos | (wrap ? 0x8000 : 0) }

    /// The whole queue state, tables included (for a hand-over).
    var snapshot: QueueState { tables.attach(to: state) }

    mutating func fail(_ v: DeviceViolation) -> VirtqueueError {
        broken = v
        return .broken(v)
    }

    mutating func enableInterrupts() -> Bool {
        state.interruptsEnabled = true
        if state.options.eventIndex {
            memory.store16(driverEventOffWrap, offWrap(state.nextUsed, state.usedWrap))
            memory.storeRelease16(driverEventFlags, PackedEventFlag.desc)
        } else {
            memory.storeRelease16(driverEventFlags, PackedEventFlag.enable)
        }
        memory.fullBarrier()
        return hasUsed
    }

    mutating func disableInterrupts() {
        state.interruptsEnabled = false
        memory.storeRelease16(driverEventFlags, PackedEventFlag.disable)
    }

    var hasUsed: Bool {
        let flags = memory.loadAcquire16(desc(Int(state.nextUsed)) + 14)
        let avail = flags & DescriptorFlag.avail != 0
        let used = flags & DescriptorFlag.used != 0
        return avail == used && used == state.usedWrap
    }
}
