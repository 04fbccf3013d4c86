public enum DMAAllocationError: Error, Equatable, CustomStringConvertible {
    case outOfMemory(requested: Int, available: Int)
    /// A piece the device must see as one range, larger than a segment of
    /// physically addressed memory (a hugepage).
    case largerThanSegment(requested: Int, segment: Int)
    public var description: String {
        switch self {
        case .outOfMemory(let r, let a): "DMA region exhausted: \(r) bytes requested, \(a) free"
        case .largerThanSegment(let r, let s):
            "\(r) bytes of ring memory do not fit one \(s)-byte hugepage (no-IOMMU mode): use a smaller queue"
        }
    }
}

/// Carves rings and buffer pools out of one `DMARegion`. It only moves a
/// cursor forward, so its whole state is one integer that can be written into
/// a hand-over record; long-lived pieces (rings, buffer pools) are allocated
/// once at device set-up and freed together with the region.
///
/// In a segmented region (hugepages at physical addresses, `DMAAddressMap`)
/// a piece that fits in a segment never crosses one: it moves on to the next
/// segment instead. A larger piece starts at a segment and is only for
/// `DMABufferPool`, which lays its buffers out segment by segment.
public struct DMAAllocator: Sendable, Hashable, Codable {
    public let regionSize: Int
    /// The region's segment size; 0 when the region is one range.
    public let segmentSize: Int
    public private(set) var cursor: Int

    public init(regionSize: Int, segmentSize: Int? = nil, start: Int = 0) {
        precondition((segmentSize ?? 0) & ((segmentSize ?? 0) - 1) == 0, "segment size must be a power of two")
        self.regionSize = regionSize
        self.segmentSize = segmentSize ?? 0
        self.cursor = start
    }

    public mutating func allocate(_ length: Int, alignment: Int = 64) throws -> DMASlice {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        func align(_ at: Int, _ a: Int) -> Int { (at + a - 1) & ~(a - 1) }
        var start = align(cursor, alignment)
        if segmentSize > 0, length > 0 {
            if length > segmentSize {
                start = align(start, segmentSize)
            } else if start / segmentSize != (start + length - 1) / segmentSize {
                start = align(start, segmentSize)
            }
        }
        guard length >= 0, start + length <= regionSize else {
            throw DMAAllocationError.outOfMemory(requested: length, available: max(0, regionSize - start))
        }
        cursor = start + length
        return DMASlice(offset: start, length: length)
    }

    public var available: Int { regionSize - cursor }
}

/// Fixed-size buffers in a DMA slice, handed out and returned by index
/// (packet buffers, block bounce buffers). No allocation after init.
///
/// No buffer crosses a segment of a segmented region: an area larger than
/// a segment starts at one and holds `segmentSize / bufferSize` buffers in
/// each, the rest of each segment unused. The layout follows from the area,
/// the buffer size and the segment size alone, so a successor rebuilds the
/// same pool from a hand-over record's placement.
public struct DMABufferPool: Sendable {
    public let area: DMASlice
    public let bufferSize: Int
    public let count: Int
    /// Buffers per segment; `count` when the area is one range.
    private let perSegment: Int
    private let segmentShift: Int
    private var freeStack: [Int32]

    /// The pool over `area` in a region whose segments are `segmentSize`
    /// bytes (nil: one range). nil if the area cannot hold such a pool.
    public init?(area: DMASlice, bufferSize: Int, segmentSize: Int?) {
        guard bufferSize > 0, area.offset >= 0, area.length >= 0 else { return nil }
        self.area = area
        self.bufferSize = bufferSize
        if let segmentSize, segmentSize > 0, area.length > segmentSize - area.offset % segmentSize {
            guard segmentSize & (segmentSize - 1) == 0, area.offset % segmentSize == 0, bufferSize <= segmentSize else { return nil }
            perSegment = segmentSize / bufferSize
            segmentShift = segmentSize.trailingZeroBitCount
            count = (area.length / segmentSize) * perSegment + (area.length % segmentSize) / bufferSize
        } else {
            count = area.length / bufferSize
            perSegment = max(count, 1)
            segmentShift = 0
        }
        freeStack = (0..<Int32(count)).reversed().map { $0 }
    }

    /// A new pool of `count` buffers from `allocator` (which knows the
    /// region's segments).
    public init(allocator: inout DMAAllocator, bufferSize: Int, count: Int) throws {
        precondition(bufferSize > 0 && count > 0)
        let segment = allocator.segmentSize
        var length = bufferSize * count
        if segment > 0, length > segment {
            precondition(bufferSize <= segment, "a \(bufferSize)-byte buffer does not fit a \(segment)-byte segment")
            let per = segment / bufferSize, full = (count - 1) / per
            length = full * segment + (count - full * per) * bufferSize
        }
        let area = try allocator.allocate(length, alignment: 4096)
        self.init(area: area, bufferSize: bufferSize, segmentSize: segment)!
        precondition(self.count == count, "pool layout gave \(self.count) buffers, \(count) asked")
    }

    /// A pool taken over from another process: the buffers in `inUse` are
    /// the device's (in flight), the rest are free. nil if an index is out of
    /// range or listed twice (the list comes from a hand-over record).
    public init?(area: DMASlice, bufferSize: Int, segmentSize: Int?, inUse: [Int]) {
        guard bufferSize > 0, area.offset >= 0, area.length >= bufferSize else { return nil }
        self.init(area: area, bufferSize: bufferSize, segmentSize: segmentSize)
        var taken = [Bool](repeating: false, count: count)
        for i in inUse {
            guard i >= 0, i < count, !taken[i] else { return nil }
            taken[i] = true
        }
        freeStack = (0..<Int32(count)).reversed().filter { !taken[Int($0)] }
    }

    public var freeCount: Int { freeStack.count }

    @inline(__always)
    public mutating func take() -> Int? {
        guard let i = freeStack.popLast() else { return nil }
        return Int(i)
    }

    @inline(__always)
    public mutating func give(_ index: Int) {
        precondition(index >= 0 && index < count && freeStack.count < count, "buffer \(index) returned twice or out of range")
        freeStack.append(Int32(index))
    }

    @inline(__always)
    public func slice(_ index: Int) -> DMASlice {
        if perSegment >= count { return DMASlice(offset: area.offset + index * bufferSize, length: bufferSize) }
        return DMASlice(offset: area.offset + ((index / perSegment) << segmentShift) + (index % perSegment) * bufferSize,
                        length: bufferSize)
    }
}
