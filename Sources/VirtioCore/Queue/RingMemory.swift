import Atomics

/// Little-endian loads and stores into one queue's memory, the only place
/// ring code touches raw pointers. Offsets are relative to the queue area.
///
/// SAFETY: `base` points into `region`, and `area` lies inside that region
/// (checked in init). `region` is `unowned(unsafe)` so that copying this view
/// costs no reference counting on the hot path: whoever creates a RingMemory
/// must keep the region alive as long as the view is used (`Virtqueue` and
/// `DeviceQueue` hold a strong reference for exactly that). Every access
/// checks `offset + width <= size`, so an offset computed from a bad index
/// traps instead of reading outside the area; ring code checks device-written
/// indices before computing offsets from them, so that trap is a bug, not an
/// attack surface. Fields the device writes concurrently (indices, flags) are
/// read with acquire ordering through swift-atomics, which works on memory
/// shared between processes; all other fields are read once into locals.
public struct RingMemory: @unchecked Sendable {
    public unowned(unsafe) let region: DMARegion
    public let area: DMASlice
    @usableFromInline let base: UnsafeMutableRawPointer

    /// `area` must be one range for the device too (inside one segment of
    /// a segmented region): queue parts and indirect tables are.
    public init(region: DMARegion, area: DMASlice) {
        precondition(region.addressMap.isContiguous(offset: area.offset, length: area.length),
                     "ring area \(area) crosses a segment of its region")
        self.region = region
        self.area = area
        self.base = region.pointer(area)
    }

    /// A view of another part of the same region (e.g. an indirect table).
    public func view(_ slice: DMASlice) -> RingMemory { RingMemory(region: region, area: slice) }

    /// Translate an untrusted device address and length into a slice of the
    /// region; nil if any byte falls outside it (same rule as `DMARegion.slice`).
    @inline(__always)
    public func translate(deviceAddress: UInt64, length: UInt32) -> DMASlice? {
        region.addressMap.slice(deviceAddress: deviceAddress, length: length, regionSize: region.size)
    }

    /// Device address of an offset inside the area (one range: see init).
    @inline(__always)
    public func deviceAddress(_ offset: Int) -> UInt64 { region.addressMap.address(area.offset + offset) }

    @inline(__always)
    func check(_ offset: Int, _ width: Int) {
        precondition(offset >= 0 && offset &+ width <= area.length, "ring access \(offset)+\(width) outside queue area")
    }

    @inline(__always)
    public func load16(_ offset: Int) -> UInt16 {
        check(offset, 2)
        return UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always)
    public func load32(_ offset: Int) -> UInt32 {
        check(offset, 4)
        return UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    public func load64(_ offset: Int) -> UInt64 {
        check(offset, 8)
        return UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    @inline(__always)
    public func store16(_ offset: Int, _ value: UInt16) {
        check(offset, 2)
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inline(__always)
    public func store32(_ offset: Int, _ value: UInt32) {
        check(offset, 4)
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
    }

    @inline(__always)
    public func store64(_ offset: Int, _ value: UInt64) {
        check(offset, 8)
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
    }

    @inline(__always)
    func atomic16(_ offset: Int) -> UnsafeAtomic<UInt16> {
        check(offset, 2)
        precondition(offset & 1 == 0, "unaligned atomic")
        return UnsafeAtomic(at: (base + offset).assumingMemoryBound(to: UInt16.AtomicRepresentation.self))
    }

    /// Load a device-written 16-bit field; later loads see what the device
    /// wrote before it (pairs with the device's release/write barrier).
    @inline(__always)
    public func loadAcquire16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: atomic16(offset).load(ordering: .acquiring))
    }

    /// Publish a 16-bit field after everything written before it.
    @inline(__always)
    public func storeRelease16(_ offset: Int, _ value: UInt16) {
        atomic16(offset).store(value.littleEndian, ordering: .releasing)
    }

    /// Full barrier between publishing an index and reading the other side's
    /// event index or flags (virtio 1.2 §2.7.10, the "mb()" of the spec).
    @inline(__always)
    public func fullBarrier() { atomicMemoryFence(ordering: .sequentiallyConsistent) }

    public func zero() { base.initializeMemory(as: UInt8.self, repeating: 0, count: area.length) }
}

/// `vring_need_event` (virtio 1.2 §2.7.10): has the other side asked to be
/// told when index `eventIndex` is passed, moving from `old` to `new`?
@inline(__always)
public func needEvent(_ eventIndex: UInt16, new: UInt16, old: UInt16) -> Bool {
    (new &- eventIndex &- 1) < (new &- old)
}
