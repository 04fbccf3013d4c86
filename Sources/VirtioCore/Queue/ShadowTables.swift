/// The driver's private per-slot tables of one queue: free-list links and
/// chain records (`QueueState.links` and `.chains` while a ring runs).
///
/// Every add and every used buffer reads and writes them. As Swift arrays
/// inside the ring's state, each write paid a uniqueness check (a call into
/// the runtime) and a bounds check; here each access is one index compare.
/// The ring's `QueueState` keeps the scalar cursors; `QueueState` with full
/// tables is rebuilt only for a hand-over (`Virtqueue.state`).
///
/// SAFETY: `links` and `chains` point to `size` initialised elements that
/// `ShadowTableStorage` allocates in init and frees in deinit; the owning
/// `Virtqueue` holds that storage as long as its ring exists and drives it
/// from one thread at a time. Every access checks `index < size` with a
/// precondition, so a bad index (a driver bug: device-written ids are
/// checked before they index anything) traps instead of touching other memory.
struct ShadowTables {
    let size: Int
    private let links: UnsafeMutablePointer<UInt16>
    private let chains: UnsafeMutablePointer<ChainRecord>

    fileprivate init(size: Int, links: UnsafeMutablePointer<UInt16>, chains: UnsafeMutablePointer<ChainRecord>) {
        self.size = size
        self.links = links
        self.chains = chains
    }

    /// The one bounds check every access goes through.
    @inline(__always)
    private func slot(_ i: Int) -> Int {
        precondition(i >= 0 && i < size, "shadow table index \(i) outside queue of \(size)")
        return i
    }

    @inline(__always) func link(_ i: Int) -> UInt16 { links[slot(i)] }
    @inline(__always) func setLink(_ i: Int, _ value: UInt16) { links[slot(i)] = value }
    @inline(__always) func setChain(_ i: Int, _ record: ChainRecord) { chains[slot(i)] = record }
    @inline(__always) func markReturned(_ i: Int) { chains[slot(i)].inFlight = false }

    /// Check a used entry the device wrote (id and length read once from
    /// shared memory) against the driver's own records; returns the chain
    /// and whether the length was beyond it (only when `tolerateOversized`).
    @inline(__always)
    func checkUsed(id: UInt32, length: UInt32, tolerateOversized: Bool) throws(DeviceViolation) -> (chain: ChainRecord, exceeded: Bool) {
        guard id < UInt32(size) else { throw .usedIDOutOfRange(id: id, queueSize: size) }
        let chain = chains[slot(Int(id))]
        guard chain.inFlight else { throw .usedIDNotInFlight(id: id) }
        guard UInt64(length) <= chain.writableCapacity else {
            if tolerateOversized { return (chain, true) }
            throw .usedLengthTooLong(id: id, length: length, capacity: chain.writableCapacity)
        }
        return (chain, false)
    }

    /// Copies, for `QueueState` (hand-over, reset).
    var linkArray: [UInt16] { Array(UnsafeBufferPointer(start: links, count: size)) }
    var chainArray: [ChainRecord] { Array(UnsafeBufferPointer(start: chains, count: size)) }

    /// Take the tables out of `state` (which must be consistent: same size),
    /// leaving it with empty ones so no stale copy stays around.
    func load(from state: inout QueueState) {
        precondition(state.links.count == size && state.chains.count == size, "tables do not match queue size")
        for i in 0..<size {
            links[i] = state.links[i]
            chains[i] = state.chains[i]
        }
        state.links = []
        state.chains = []
    }

    /// `state`'s scalars with these tables: the full value to hand over.
    func attach(to state: QueueState) -> QueueState {
        var s = state
        s.links = linkArray
        s.chains = chainArray
        return s
    }
}

/// Owns the memory of one queue's `ShadowTables`.
final class ShadowTableStorage {
    let tables: ShadowTables

    init(size: Int) {
        let links = UnsafeMutablePointer<UInt16>.allocate(capacity: size)
        links.initialize(repeating: 0, count: size)
        let chains = UnsafeMutablePointer<ChainRecord>.allocate(capacity: size)
        chains.initialize(repeating: ChainRecord(), count: size)
        tables = ShadowTables(size: size, links: links, chains: chains)
    }

    deinit {
        tables.linksPointer.deinitialize(count: tables.size)
        tables.linksPointer.deallocate()
        tables.chainsPointer.deinitialize(count: tables.size)
        tables.chainsPointer.deallocate()
    }
}

extension ShadowTables {
    fileprivate var linksPointer: UnsafeMutablePointer<UInt16> { links }
    fileprivate var chainsPointer: UnsafeMutablePointer<ChainRecord> { chains }
}
