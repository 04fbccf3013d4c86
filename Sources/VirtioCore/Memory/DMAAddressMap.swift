/// How offsets into a `DMARegion` become the addresses a device uses in
/// descriptors and queue registers (virtio 1.2 §2.7.5, §4.1.4.3).
///
/// - Behind an IOMMU the region is mapped as one run at an I/O virtual
///   address: `linear(base)`, one segment covering every offset.
/// - Without one (vfio's no-IOMMU mode) the device uses guest-physical
///   addresses, and the region is a file of hugepages, each somewhere in
///   physical memory: `segments`, one base address per hugepage. A buffer
///   the device sees as one address range must then lie inside one segment
///   (`DMAAllocator` and `DMABufferPool` place them so).
///
/// The map is set when the region is made and never changes; it is plain
/// data, so the supervisor can send it to a plugin.
public struct DMAAddressMap: Sendable, Hashable, Codable {
    /// log2 of the segment size. A linear map uses 62: every offset a
    /// region can have falls in segment 0.
    public let segmentShift: Int
    /// Device address of each segment's first byte.
    public let segmentBases: [UInt64]

    private static let linearShift = 62

    /// One run at `base`: IOVA = base + offset.
    public static func linear(_ base: UInt64) -> DMAAddressMap {
        DMAAddressMap(shift: linearShift, bases: [base])
    }

    private init(shift: Int, bases: [UInt64]) {
        segmentShift = shift
        segmentBases = bases
    }

    /// Segments of `segmentSize` bytes (a power of two, ≥ 4 KiB) at `bases`,
    /// each aligned to the segment size (hugepages are). nil otherwise.
    public init?(segmentSize: Int, bases: [UInt64]) {
        guard segmentSize >= 4096, segmentSize & (segmentSize - 1) == 0, !bases.isEmpty,
              bases.allSatisfy({ $0 % UInt64(segmentSize) == 0 }) else { return nil }
        self.init(shift: segmentSize.trailingZeroBitCount, bases: bases)
    }

    /// Whether offsets map to one run (an IOMMU mapping).
    public var isLinear: Bool { segmentShift == Self.linearShift }

    /// Bytes in a segment; nil for a linear map (no limit).
    public var segmentSize: Int? { isLinear ? nil : 1 << segmentShift }

    /// How many bytes of region the map covers.
    public var coveredSize: Int { isLinear ? Int.max : segmentBases.count << segmentShift }

    @inline(__always)
    var offsetMask: Int { (1 << segmentShift) - 1 }

    /// Device address of a (trusted, in-region) offset.
    @inline(__always)
    public func address(_ offset: Int) -> UInt64 {
        segmentBases[offset >> segmentShift] + UInt64(offset & offsetMask)
    }

    /// Whether `length` bytes from `offset` lie in one segment: what the
    /// device can reach as one address range.
    @inline(__always)
    public func isContiguous(offset: Int, length: Int) -> Bool {
        length <= 1 || offset >> segmentShift == (offset + length - 1) >> segmentShift
    }

    /// The one rule for untrusted addresses: the slice a device address and
    /// length name in a region of `regionSize` bytes, or nil if any byte (or
    /// the sum) falls outside it — or, segmented, outside the segment the
    /// address starts in. A segmented lookup scans the segments (a handful
    /// of hugepages); only device-side code (the software device) uses it.
    @inline(__always)
    public func slice(deviceAddress: UInt64, length: UInt32, regionSize: Int) -> DMASlice? {
        if isLinear {
            return DMASlice(deviceAddress: deviceAddress, length: length, regionDeviceBase: segmentBases[0], regionSize: regionSize)
        }
        let size = UInt64(1) << UInt64(segmentShift)
        for (i, base) in segmentBases.enumerated() where deviceAddress >= base && deviceAddress - base < size {
            let within = deviceAddress - base
            guard within + UInt64(length) <= size else { return nil }
            let offset = (i << segmentShift) + Int(within)
            guard offset + Int(length) <= regionSize else { return nil }
            return DMASlice(offset: offset, length: Int(length))
        }
        return nil
    }
}
