import Atomics

/// Little-endian loads and stores into one queue's memory, the only place
/// ring code touches raw pointers. Offsets are relative to the queue area.
///
/// SAFETY: `base` points into a `DMARegion` that `region` keeps mapped, and
/// `size` bytes from it lie inside that region (checked in init). Every access
/// checks `offset + width <= size`, so an offset computed from a bad index
/// traps instead of reading outside the area; ring code checks device-written
/// indices before computing offsets from them, so that trap is a bug, not an
/// attack surface. Fields the device writes concurrently (indices, flags) are
/// read with acquire ordering through swift-atomics, which works on memory
/// shared between processes; all other fields are read once into locals.
public struct RingMemory: @unchecked Sendable {
    public let region: DMARegion
    public let area: DMASlice
    @usableFromInline let base: UnsafeMutableRawPointer

    public init(region: DMARegion, area: DMASlice) {
        self.region = region
        self.area = area
        self.base = region.pointer(area)
    }

    /// Device address of an offset inside the area.
    @inline(__always)
    public func deviceAddress(_ offset: Int) -> UInt64 { region.deviceBase + UInt64(area.offset + offset) }

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
