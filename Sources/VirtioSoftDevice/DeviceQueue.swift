import VirtioCore

/// Device side of one virtqueue, split or packed: pop available chains,
/// push used ones, decide interrupts. What the driver wrote is checked
/// (`DriverViolation`); a queue that saw a violation stays stopped.
public final class DeviceQueue: @unchecked Sendable {
    // SAFETY (Sendable): driven by one device thread at a time.
    public let layout: RingLayout
    public let memory: RingMemory
    private let ring: Ring
    /// Owns the storage `ring` points into; `region` keeps the memory mapped.
    private let storage: AnyObject
    private let region: DMARegion
    private let stopped = OwnedState<DriverViolation?>(nil)

    private enum Ring {
        case split(UnsafeMutablePointer<SplitDeviceRing>)
        case packed(UnsafeMutablePointer<PackedDeviceRing>)
    }

    /// Why the queue stopped (nil while it runs).
    public var violation: DriverViolation? { stopped.pointer.pointee }

    public init(layout: RingLayout, size: Int, region: DMARegion, area: DMASlice, eventIndex: Bool) {
        self.layout = layout
        self.memory = RingMemory(region: region, area: area)
        self.region = region
        if layout == .split {
            let box = OwnedState(SplitDeviceRing(memory: memory, size: size, eventIndex: eventIndex))
            (ring, storage) = (.split(box.pointer), box)
        } else {
            let box = OwnedState(PackedDeviceRing(memory: memory, size: size, eventIndex: eventIndex))
            (ring, storage) = (.packed(box.pointer), box)
        }
    }

    /// The queue area a driver `Virtqueue` uses, seen from the device.
    public convenience init(mirroring q: Virtqueue, eventIndex: Bool) {
        self.init(layout: q.layout, size: q.size, region: q.memory.region, area: q.memory.area, eventIndex: eventIndex)
    }

    /// Take the next available chain into `chain`; false if none (or stopped).
    @inline(__always)
    public func pop(into chain: inout DeviceChain) -> Bool {
        guard stopped.pointer.pointee == nil else { return false }
        do {
            switch ring {
            case .split(let r): return try r.pointee.pop(into: &chain)
            case .packed(let r): return try r.pointee.pop(into: &chain)
            }
        } catch {
            stopped.pointer.pointee = error
            return false
        }
    }

    /// Return a chain with `length` bytes written. For split rings the entry
    /// becomes visible at `commit()`, for packed rings at once.
    @inline(__always)
    public func push(_ chain: DeviceChain, length: UInt32) {
        push(id: UInt32(chain.id), length: length, descriptorCount: chain.descriptorCount)
    }

    /// Raw used entry; nothing is checked, so tests can make the device lie.
    public func push(id: UInt32, length: UInt32, descriptorCount: Int = 1) {
        switch ring {
        case .split(let r): r.pointee.push(id: id, length: length)
        case .packed(let r): r.pointee.push(id: id, length: length, descriptorCount: descriptorCount)
        }
    }

    /// Publish pushed entries; true if the driver asked for an interrupt.
    @inline(__always)
    public func commit() -> Bool {
        switch ring {
        case .split(let r): r.pointee.commit()
        case .packed(let r): r.pointee.commit()
        }
    }

    /// Tell the driver whether notifications are wanted (§2.7.10, §2.8.10).
    public func setNotifications(enabled: Bool) {
        switch ring {
        case .split(let r): r.pointee.setNotifications(enabled: enabled)
        case .packed(let r): r.pointee.setNotifications(enabled: enabled)
        }
    }

    /// Split only: force the used index (a lying device, for tests).
    public func setUsedIndex(_ v: UInt16) {
        guard case .split(let r) = ring else { preconditionFailure("used index exists only in split rings") }
        r.pointee.setUsedIndex(v)
    }

    // MARK: data
    //
    // SAFETY: every segment slice in a `DeviceChain` came from
    // `RingMemory.translate`, which only returns slices wholly inside the
    // region, and `DMARegion.pointer` re-checks that; copies are bounded by
    // both the slice length and the caller's buffer.

    /// Copy the chain's readable bytes, in order, into `buffer`; returns the count.
    public func read(_ chain: DeviceChain, into buffer: UnsafeMutableRawBufferPointer, skipping: Int = 0) -> Int {
        var skip = skipping, out = 0
        for s in chain.segments where !s.isWritable {
            if skip >= s.slice.length { skip -= s.slice.length; continue }
            let n = min(s.slice.length - skip, buffer.count - out)
            if n <= 0 { break }
            (buffer.baseAddress! + out).copyMemory(from: memory.region.pointer(s.slice) + skip, byteCount: n)
            out += n
            skip = 0
        }
        return out
    }

    public func readBytes(_ chain: DeviceChain, count: Int, skipping: Int = 0) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = bytes.withUnsafeMutableBytes { read(chain, into: $0, skipping: skipping) }
        return Array(bytes.prefix(n))
    }

    /// Copy `bytes` into the chain's writable segments, in order, starting
    /// `skipping` bytes in; returns how many fitted.
    @discardableResult
    public func write(_ chain: DeviceChain, from bytes: UnsafeRawBufferPointer, skipping: Int = 0) -> Int {
        var skip = skipping, done = 0
        for s in chain.segments where s.isWritable {
            if skip >= s.slice.length { skip -= s.slice.length; continue }
            let n = min(s.slice.length - skip, bytes.count - done)
            if n <= 0 { break }
            (memory.region.pointer(s.slice) + skip).copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            done += n
            skip = 0
        }
        return done
    }

    @discardableResult
    public func write(_ chain: DeviceChain, bytes: [UInt8], skipping: Int = 0) -> Int {
        bytes.withUnsafeBytes { write(chain, from: $0, skipping: skipping) }
    }
}
