/// Everything the driver side of one virtqueue knows that is not in ring
/// memory: a plain value. One process saves it (into a state area of the
/// shared memfd), another restores it and continues the same queue without a
/// device reset (cf. rust-vmm's `QueueState`). Its binary form is versioned
/// and checked: see `QueueStateCodec`.
public struct QueueState: Sendable, Hashable {
    public var layout: RingLayout
    public var size: Int
    /// The queue's area in the DMA region (rings, then indirect tables).
    public var area: DMASlice
    public var options: QueueOptions

    /// Split: free-running shadow of avail->idx. Packed: next descriptor position.
    public var nextAvail: UInt16 = 0
    /// Packed: driver ring wrap counter (starts at 1, §2.8.1).
    public var availWrap: Bool = true
    /// Chains added since the last `publish()` (for the notification decision).
    public var addedSincePublish: UInt16 = 0
    /// Split: last used index seen. Packed: next position to look for a used descriptor.
    public var nextUsed: UInt16 = 0
    /// Packed: device ring wrap counter expected at `nextUsed`.
    public var usedWrap: Bool = true
    /// Split: head of the free descriptor list. Packed: head of the free buffer-ID list.
    public var freeHead: UInt16 = 0
    /// Free descriptors (ring slots for packed).
    public var freeDescriptors: Int
    /// Split: per descriptor, the next free descriptor or the next in its chain.
    /// Packed: per buffer ID, the next free ID. (While a ring runs, it keeps
    /// this and `chains` in its `ShadowTables`; `Virtqueue.state` puts them back.)
    public var links: [UInt16]
    /// Per head descriptor (split) or buffer ID (packed).
    public var chains: [ChainRecord]
    public var inFlightChains: Int = 0
    public var interruptsEnabled: Bool = true

    /// A fresh queue: everything free, nothing in flight.
    public init(layout: RingLayout, size: Int, area: DMASlice, options: QueueOptions) {
        self.layout = layout
        self.size = size
        self.area = area
        self.options = options
        self.freeDescriptors = size
        self.links = (0..<size).map { UInt16(truncatingIfNeeded: $0 + 1) }
        self.chains = Array(repeating: ChainRecord(), count: size)
    }

    /// Whether a chain of `count` segments can be added now, and how: as an
    /// indirect table (one ring slot) or directly (`count` slots).
    @inline(__always)
    func admit(count: Int, wantIndirect: Bool) throws(VirtqueueError) -> (indirect: Bool, needed: Int) {
        guard count > 0 else { throw .emptyChain }
        let indirect = wantIndirect && count > 1 && options.indirectCapacity > 0
        if indirect, count > options.indirectCapacity {
            throw .chainTooLong(segments: count, maximum: options.indirectCapacity)
        }
        let needed = indirect ? 1 : count
        guard freeDescriptors >= needed else { throw .full(needed: needed, free: freeDescriptors) }
        return (indirect, needed)
    }

    /// Why a state cannot describe a usable queue (nil if it can). Checked on
    /// every restore: the state area is shared memory and may be stale or torn.
    public func inconsistency() -> String? {
        guard size >= 1, size <= QueueGeometry.maxSize else { return "queue size \(size) out of range" }
        if layout == .split && size & (size - 1) != 0 { return "split queue size \(size) not a power of two" }
        guard links.count == size, chains.count == size else { return "tables do not match queue size" }
        guard options.indirectCapacity >= 0, options.indirectCapacity <= 4096 else { return "bad indirect capacity" }
        let geometry = QueueGeometry(layout: layout, size: size, indirectCapacity: options.indirectCapacity)
        guard area.offset >= 0, area.length >= geometry.totalLength else { return "queue area too small" }
        guard freeDescriptors >= 0, freeDescriptors <= size else { return "free count \(freeDescriptors) out of range" }
        if layout == .packed {
            guard Int(nextAvail) < size, Int(nextUsed) < size else { return "ring position out of range" }
        }
        let inFlight = chains.filter(\.inFlight)
        guard inFlight.count == inFlightChains else { return "in-flight count disagrees with chain table" }
        let used = inFlight.reduce(0) { $0 + Int($1.descriptorCount) }
        guard inFlight.allSatisfy({ $0.descriptorCount >= 1 && Int($0.descriptorCount) <= size }),
              used + freeDescriptors == size else {
            return "descriptors in flight (\(used)) and free (\(freeDescriptors)) do not add up to \(size)"
        }
        // The free list must reach exactly `freeDescriptors` (split) or
        // `size - inFlightChains` (packed IDs) entries without a loop.
        let freeCount = layout == .split ? freeDescriptors : size - inFlightChains
        var seen = [Bool](repeating: false, count: size)
        var cursor = Int(freeHead)
        for _ in 0..<freeCount {
            guard cursor < size, !seen[cursor] else { return "free list broken at \(cursor)" }
            if layout == .packed, chains[cursor].inFlight { return "free ID \(cursor) is in flight" }
            seen[cursor] = true
            cursor = Int(links[cursor])
        }
        if layout == .split {
            // Each in-flight chain's links must stay inside the table and off the free list.
            for (head, chain) in chains.enumerated() where chain.inFlight {
                var d = head
                for i in 0..<Int(chain.descriptorCount) {
                    guard d < size, !seen[d] else { return "chain \(head) overlaps free list or another chain" }
                    seen[d] = true
                    if i + 1 < Int(chain.descriptorCount) { d = Int(links[d]) }
                }
            }
        }
        return nil
    }
}
