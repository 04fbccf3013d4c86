public enum DMAAllocationError: Error, Equatable, CustomStringConvertible {
    case outOfMemory(requested: Int, available: Int)
    public var description: String {
        switch self {
        case .outOfMemory(let r, let a): "DMA region exhausted: \(r) bytes requested, \(a) free"
        }
    }
}

/// Carves rings and buffer pools out of one `DMARegion`. It only moves a
/// cursor forward, so its whole state is one integer that can be written into
/// a hand-over record; long-lived pieces (rings, buffer pools) are allocated
/// once at device set-up and freed together with the region.
public struct DMAAllocator: Sendable, Hashable, Codable {
    public let regionSize: Int
    public private(set) var cursor: Int

    public init(regionSize: Int, start: Int = 0) {
        self.regionSize = regionSize
        self.cursor = start
    }

    public mutating func allocate(_ length: Int, alignment: Int = 64) throws -> DMASlice {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        let start = (cursor + alignment - 1) & ~(alignment - 1)
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
public struct DMABufferPool: Sendable {
    public let area: DMASlice
    public let bufferSize: Int
    public let count: Int
    private var freeStack: [Int32]

    public init(area: DMASlice, bufferSize: Int) {
        precondition(bufferSize > 0)
        self.area = area
        self.bufferSize = bufferSize
        self.count = area.length / bufferSize
        self.freeStack = (0..<Int32(count)).reversed().map { $0 }
    }

    public init(allocator: inout DMAAllocator, bufferSize: Int, count: Int) throws {
        let area = try allocator.allocate(bufferSize * count, alignment: 4096)
        self.init(area: area, bufferSize: bufferSize)
    }

    /// A pool taken over from another process: the buffers in `inUse` are
    /// the device's (in flight), the rest are free. nil if an index is out of
    /// range or listed twice (the list comes from a hand-over record).
    public init?(area: DMASlice, bufferSize: Int, inUse: [Int]) {
        guard bufferSize > 0, area.offset >= 0, area.length >= bufferSize else { return nil }
        self.init(area: area, bufferSize: bufferSize)
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
        DMASlice(offset: area.offset + index * bufferSize, length: bufferSize)
    }
}
