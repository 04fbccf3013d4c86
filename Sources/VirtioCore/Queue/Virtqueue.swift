/// The driver side of one virtqueue, split or packed, behind one API:
/// add chains → publish (notify if asked) → pop used → chains are reclaimed.
///
/// A queue that sees the device break the rules (see `DeviceViolation`)
/// becomes broken: every later call throws `.broken` until `reset()`. Other
/// queues, and the process, are unaffected.
///
/// Not thread-safe: one owner drives a queue (a plugin's queue task).
public final class Virtqueue: @unchecked Sendable {
    // SAFETY (Sendable): the rings only hold a `RingMemory` (itself a view of
    // a region kept alive by reference) and plain values; a queue has one
    // owner at a time and is handed between threads, never shared.
    public let layout: RingLayout
    public let geometry: QueueGeometry
    public let memory: RingMemory
    private let ring: Ring
    /// `storage` and `tableStorage` own the memory `ring` points into;
    /// `region` keeps the DMA memory mapped.
    private let storage: AnyObject
    private let tableStorage: ShadowTableStorage
    private let region: DMARegion

    private enum Ring {
        case split(UnsafeMutablePointer<SplitDriverRing>)
        case packed(UnsafeMutablePointer<PackedDriverRing>)
    }

    private static func makeRing(_ state: QueueState, _ memory: RingMemory) -> (Ring, AnyObject, ShadowTableStorage) {
        let tables = ShadowTableStorage(size: state.size)
        if state.layout == .split {
            let box = OwnedState(SplitDriverRing(state: state, memory: memory, tables: tables.tables))
            return (.split(box.pointer), box, tables)
        }
        let box = OwnedState(PackedDriverRing(state: state, memory: memory, tables: tables.tables))
        return (.packed(box.pointer), box, tables)
    }

    /// A new, empty queue in `area` of `region` (its memory is zeroed).
    public init(layout: RingLayout, size: Int, region: DMARegion, area: DMASlice, options: QueueOptions = .init()) {
        let geometry = QueueGeometry(layout: layout, size: size, indirectCapacity: options.indirectCapacity)
        precondition(area.length >= geometry.totalLength, "queue area of \(area.length) bytes, need \(geometry.totalLength)")
        self.layout = layout
        self.geometry = geometry
        self.memory = RingMemory(region: region, area: area)
        memory.zero()
        self.region = region
        let fresh = QueueState(layout: layout, size: size, area: area, options: options)
        (self.ring, self.storage, self.tableStorage) = Self.makeRing(fresh, memory)
    }

    /// A new queue with its area taken from `allocator`.
    public convenience init(layout: RingLayout, size: Int, region: DMARegion, allocator: inout DMAAllocator,
                            options: QueueOptions = .init()) throws {
        let g = QueueGeometry(layout: layout, size: size, indirectCapacity: options.indirectCapacity)
        if let segment = region.segmentSize, g.totalLength > segment {
            throw DMAAllocationError.largerThanSegment(requested: g.totalLength, segment: segment)
        }
        let area = try allocator.allocate(g.totalLength, alignment: 4096)
        self.init(layout: layout, size: size, region: region, area: area, options: options)
    }

    /// Continue a live queue from a saved state. Ring memory is left as it is:
    /// the device keeps running. Throws if the state is inconsistent.
    public init(restoring state: QueueState, region: DMARegion) throws(QueueStateError) {
        if let why = state.inconsistency() { throw .inconsistent(why) }
        guard state.area.offset + state.area.length <= region.size else {
            throw .inconsistent("queue area \(state.area) outside region of \(region.size) bytes")
        }
        guard region.addressMap.isContiguous(offset: state.area.offset, length: state.area.length) else {
            throw .inconsistent("queue area \(state.area) crosses a \(region.segmentSize ?? 0)-byte hugepage of the region")
        }
        self.layout = state.layout
        self.geometry = QueueGeometry(layout: state.layout, size: state.size, indirectCapacity: state.options.indirectCapacity)
        self.memory = RingMemory(region: region, area: state.area)
        self.region = region
        (self.ring, self.storage, self.tableStorage) = Self.makeRing(state, memory)
    }

    /// Device addresses to program into the transport (§4.1.4.3 queue_desc/driver/device).
    public var addresses: QueueAddresses { geometry.addresses(in: memory) }
    public var size: Int { geometry.size }

    /// The state to hand to another process. The caller must have stopped
    /// adding chains; chains in flight stay in flight and are continued.
    public var state: QueueState {
        switch ring {
        case .split(let r): r.pointee.snapshot
        case .packed(let r): r.pointee.snapshot
        }
    }

    /// The cursors and counts alone (no table copies).
    private var cursors: QueueState {
        switch ring {
        case .split(let r): r.pointee.state
        case .packed(let r): r.pointee.state
        }
    }

    public var brokenReason: DeviceViolation? {
        switch ring {
        case .split(let r): r.pointee.broken
        case .packed(let r): r.pointee.broken
        }
    }
    public var isBroken: Bool { brokenReason != nil }
    public var freeDescriptors: Int { cursors.freeDescriptors }
    public var inFlight: Int { cursors.inFlightChains }

    /// Add one chain; `token` comes back with it in `popUsed()`. With
    /// `indirect` (and room for indirect tables) a multi-segment chain takes a
    /// single ring slot. Not visible to the device until `publish()`.
    @inline(__always)
    public func add(_ segments: UnsafeBufferPointer<BufferSegment>, token: UInt64, indirect: Bool = false) throws(VirtqueueError) {
        switch ring {
        case .split(let r): try r.pointee.add(segments, token: token, indirect: indirect)
        case .packed(let r): try r.pointee.add(segments, token: token, indirect: indirect)
        }
    }

    @inline(__always)
    public func add(_ segments: [BufferSegment], token: UInt64, indirect: Bool = false) throws(VirtqueueError) {
        try segments.withUnsafeBufferPointer { (b) throws(VirtqueueError) in try add(b, token: token, indirect: indirect) }
    }

    /// Make added chains visible to the device; true if the device asked to be
    /// notified (then call `Transport.notify`).
    @inline(__always)
    public func publish() -> Bool {
        switch ring {
        case .split(let r): r.pointee.publish()
        case .packed(let r): r.pointee.publish()
        }
    }

    /// The next chain the device has finished with, after checking what it
    /// wrote; nil if there is none. Its descriptors are free again.
    @inline(__always)
    public func popUsed() throws(VirtqueueError) -> UsedBuffer? {
        switch ring {
        case .split(let r): try r.pointee.popUsed()
        case .packed(let r): try r.pointee.popUsed()
        }
    }

    /// Whether the device has returned something not yet popped.
    public var hasUsed: Bool {
        switch ring {
        case .split(let r): r.pointee.hasUsed
        case .packed(let r): r.pointee.hasUsed
        }
    }

    /// Ask the device for interrupts; true if used buffers arrived in the
    /// meantime (pop them before sleeping).
    public func enableInterrupts() -> Bool {
        switch ring {
        case .split(let r): r.pointee.enableInterrupts()
        case .packed(let r): r.pointee.enableInterrupts()
        }
    }

    public func disableInterrupts() {
        switch ring {
        case .split(let r): r.pointee.disableInterrupts()
        case .packed(let r): r.pointee.disableInterrupts()
        }
    }

    /// Forget everything in flight and start the ring from zero, after the
    /// device (or this queue, with VIRTIO_F_RING_RESET) was reset. Returns the
    /// tokens of chains that were in flight, so their buffers can be freed.
    @discardableResult
    public func reset() -> [UInt64] {
        let old = state
        let tokens = old.chains.filter(\.inFlight).map(\.token)
        memory.zero()
        let fresh = QueueState(layout: layout, size: size, area: old.area, options: old.options)
        switch ring {
        case .split(let r): r.pointee = SplitDriverRing(state: fresh, memory: memory, tables: tableStorage.tables)
        case .packed(let r): r.pointee = PackedDriverRing(state: fresh, memory: memory, tables: tableStorage.tables)
        }
        return tokens
    }
}
