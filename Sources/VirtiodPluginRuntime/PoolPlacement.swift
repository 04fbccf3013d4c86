import VirtioCore

/// Where a data path's buffer pool lies in DMA memory, as a hand-over record
/// carries it: the successor rebuilds the pool from this and from which
/// buffers the queue says the device still holds (a chain's token is its
/// buffer's index in the pool).
public struct PoolPlacement: Codable, Sendable, Hashable {
    public var offset: Int
    public var length: Int
    public var bufferSize: Int

    public init(offset: Int, length: Int, bufferSize: Int) {
        self.offset = offset
        self.length = length
        self.bufferSize = bufferSize
    }

    public init(_ pool: DMABufferPool) {
        offset = pool.area.offset
        length = pool.area.length
        bufferSize = pool.bufferSize
    }
}

extension DeviceDriver {
    /// The pool a hand-over record places for the queue at position
    /// `queue` of `queues` (shared memory, so not trusted): it must lie in
    /// allocated DMA memory clear of rings, the scratch page and every area
    /// restored before, and every token in flight on the queue must be one
    /// of its buffers, once. `held`: buffers the data path keeps outside the
    /// queue (returned by the device, not yet passed on), taken too.
    /// Throws without touching anything otherwise.
    public func restoredPool(_ placement: PoolPlacement, queue position: Int, _ what: String, held: [Int] = []) throws -> DMABufferPool {
        guard position >= 0, position < queues.count else { throw PluginError("\(what): queue \(position) is not set up") }
        let area = DMASlice(offset: placement.offset, length: placement.length)
        try claimRestoredArea(area, "the \(what) buffer pool")
        let inFlight = queues[position].queue.state.chains.filter(\.inFlight)
        guard placement.bufferSize > 0,
              let pool = DMABufferPool(area: area, bufferSize: placement.bufferSize, segmentSize: device.region.segmentSize, inUse: inFlight.map { Int(clamping: $0.token) } + held)
        else {
            throw PluginError("the \(what) buffer pool in the record does not fit the queue's buffers in flight")
        }
        // The device may write a chain's whole writable capacity: it must fit the buffer the chain is.
        if let big = inFlight.first(where: { $0.writableCapacity > UInt64(placement.bufferSize) }) {
            throw PluginError("the \(what) queue state has a chain of \(big.writableCapacity) writable bytes in flight, "
                              + "more than a \(placement.bufferSize)-byte buffer of its pool")
        }
        return pool
    }
}
