#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A piece of a `DMARegion`, named by offset so it means the same thing in
/// every process that maps the region (the basis of hand-over).
public struct DMASlice: Sendable, Hashable, Codable {
    public var offset: Int
    public var length: Int
    public init(offset: Int, length: Int) {
        self.offset = offset
        self.length = length
    }

    /// Whether the two share a byte.
    public func overlaps(_ other: DMASlice) -> Bool {
        // A slice whose end does not fit an Int (from a hand-over record,
        // say) overlaps everything: whoever asks refuses it, nothing traps.
        guard let end, let otherEnd = other.end else { return true }
        return offset < otherEnd && other.offset < end
    }

    /// offset + length, nil if that overflows or either is negative.
    public var end: Int? {
        let (e, overflow) = offset.addingReportingOverflow(length)
        return overflow || offset < 0 || length < 0 ? nil : e
    }

    /// The one rule for untrusted addresses: the slice a device address and
    /// length name in a region, or nil if any byte (or the sum) falls outside.
    @inline(__always)
    public init?(deviceAddress: UInt64, length: UInt32, regionDeviceBase: UInt64, regionSize: Int) {
        guard deviceAddress >= regionDeviceBase else { return nil }
        let offset = deviceAddress - regionDeviceBase
        let (end, overflow) = offset.addingReportingOverflow(UInt64(length))
        guard !overflow, end <= UInt64(regionSize) else { return nil }
        self.init(offset: Int(offset), length: Int(length))
    }
}

/// Memory that the driver reaches at a host address and the device at a
/// device address (IOVA under VFIO). It is one contiguous mapping, typically of
/// a memfd that the supervisor maps for the IOMMU and a plugin maps for itself.
///
/// All ring and buffer memory of a device lives in one region; everything
/// that refers into it is an offset, so another process with the region mapped
/// at another address can continue where this one stopped.
public final class DMARegion: @unchecked Sendable {
    // SAFETY: `base` points to `size` bytes that stay mapped for the lifetime
    // of this object: either `owner` keeps the mapping alive, or this object
    // unmaps it in deinit (anonymous mappings). Concurrent access by the device
    // is the nature of DMA memory: ring code reads device-written fields once,
    // with acquire ordering, and checks them before use.
    public let base: UnsafeMutableRawPointer
    public let size: Int
    /// How offsets become device addresses (one IOVA run, or hugepages at
    /// guest-physical addresses).
    public let addressMap: DMAAddressMap
    private let owner: AnyObject?
    private let unmapOnDeinit: Bool

    /// Device address of offset 0.
    public var deviceBase: UInt64 { addressMap.segmentBases[0] }

    /// Bytes the device reaches as one address range from a segment's start;
    /// nil when the whole region is one range.
    public var segmentSize: Int? { addressMap.segmentSize }

    /// Wrap memory someone else mapped and keeps alive (`owner`), reached by
    /// the device as one run at `deviceBase`.
    public convenience init(base: UnsafeMutableRawPointer, size: Int, deviceBase: UInt64, owner: AnyObject?) {
        self.init(base: base, size: size, addressMap: .linear(deviceBase), owner: owner)
    }

    /// Wrap memory someone else mapped and keeps alive (`owner`); the map
    /// must cover all `size` bytes.
    public init(base: UnsafeMutableRawPointer, size: Int, addressMap: DMAAddressMap, owner: AnyObject?) {
        precondition(addressMap.coveredSize >= size, "address map covers \(addressMap.coveredSize) of \(size) bytes")
        self.base = base
        self.size = size
        self.addressMap = addressMap
        self.owner = owner
        self.unmapOnDeinit = false
    }

    /// A zeroed anonymous shared mapping, for tests, benchmarks and scratch
    /// work no device sees (the plugins' hand-over rehearsal).
    public init(anonymousSize size: Int, deviceBase: UInt64 = 0x1_0000_0000) {
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("mmap of \(size) bytes failed: errno \(errno)") }
        self.base = p
        self.size = size
        self.addressMap = .linear(deviceBase)
        self.owner = nil
        self.unmapOnDeinit = true
    }

    deinit {
        if unmapOnDeinit { munmap(base, size) }
    }

    /// Host pointer for a slice the driver made itself (trusted offsets).
    @inline(__always)
    public func pointer(_ slice: DMASlice) -> UnsafeMutableRawPointer {
        precondition(slice.offset >= 0 && slice.length >= 0 && slice.offset + slice.length <= size,
                     "DMA slice \(slice) outside region of \(size) bytes")
        return base + slice.offset
    }

    /// Device address of a slice the driver made, which the device reaches
    /// as one range from there: it must not cross a segment (allocators
    /// place pieces so; a slice that does is a bug and traps).
    @inline(__always)
    public func deviceAddress(_ slice: DMASlice) -> UInt64 {
        precondition(addressMap.isContiguous(offset: slice.offset, length: slice.length),
                     "DMA slice \(slice) crosses a \(addressMap.segmentSize ?? 0)-byte segment")
        return addressMap.address(slice.offset)
    }

    // Byte access inside a driver-made slice, so data paths need no raw
    // pointers of their own: every access is checked against the slice
    // (and `pointer` checks the slice against the region).

    /// Copy `bytes` to the start of `slice`.
    public func copy(_ bytes: [UInt8], into slice: DMASlice) {
        copy(bytes[...], into: slice)
    }

    /// Copy `bytes` (a part of a larger array, not copied first) to the start of `slice`.
    public func copy(_ bytes: ArraySlice<UInt8>, into slice: DMASlice) {
        precondition(bytes.count <= slice.length, "\(bytes.count) bytes do not fit in \(slice)")
        guard !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { pointer(slice).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    }

    /// The first `count` bytes of `slice`.
    public func bytes(_ slice: DMASlice, count: Int) -> [UInt8] {
        precondition(count >= 0 && count <= slice.length, "\(count) bytes read from \(slice)")
        return [UInt8](UnsafeRawBufferPointer(start: pointer(slice), count: count))
    }

    public func load8(_ slice: DMASlice, at offset: Int) -> UInt8 {
        precondition(offset >= 0 && offset + 1 <= slice.length, "byte \(offset) outside \(slice)")
        return pointer(slice).load(fromByteOffset: offset, as: UInt8.self)
    }

    public func loadLE16(_ slice: DMASlice, at offset: Int) -> UInt16 {
        precondition(offset >= 0 && offset + 2 <= slice.length, "le16 at \(offset) outside \(slice)")
        return UInt16(littleEndian: pointer(slice).loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    public func storeLE16(_ value: UInt16, _ slice: DMASlice, at offset: Int) {
        precondition(offset >= 0 && offset + 2 <= slice.length, "le16 at \(offset) outside \(slice)")
        pointer(slice).storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    public func storeLE32(_ value: UInt32, _ slice: DMASlice, at offset: Int) {
        precondition(offset >= 0 && offset + 4 <= slice.length, "le32 at \(offset) outside \(slice)")
        pointer(slice).storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt32.self)
    }

    public func storeLE64(_ value: UInt64, _ slice: DMASlice, at offset: Int) {
        precondition(offset >= 0 && offset + 8 <= slice.length, "le64 at \(offset) outside \(slice)")
        pointer(slice).storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
    }

    /// Whether the first `count` bytes of `slice` are all zero.
    public func isZero(_ slice: DMASlice, count: Int) -> Bool {
        precondition(count >= 0 && count <= slice.length, "\(count) bytes checked in \(slice)")
        let p = pointer(slice)
        var i = 0
        while i + 8 <= count {
            if p.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < count {
            if p.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
            i += 1
        }
        return true
    }

    /// Translate a device address and length coming from untrusted memory
    /// (a descriptor) into a slice; nil if any byte falls outside the region.
    @inline(__always)
    public func slice(deviceAddress: UInt64, length: UInt32) -> DMASlice? {
        addressMap.slice(deviceAddress: deviceAddress, length: length, regionSize: size)
    }
}
