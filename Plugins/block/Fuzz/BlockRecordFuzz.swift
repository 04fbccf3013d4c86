// Fuzz target over what a successor trusts least: a block queue's hand-over
// record (virtio 1.2 §5.2 data path state), which lies in memory another
// process wrote. The input picks every field — slots (negative, huge,
// shared), part counts, bytes received and sent, replies waiting — and the
// tokens the queue holds in flight. `BlockQueue.restore` must either refuse
// it or yield a queue that can then send its replies and collect without
// touching memory outside its slots. `make fuzz` builds this plugin with
// -DFUZZING, where its main runs this under libFuzzer; its tests replay
// Fuzz/Corpus/.
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// Reads the fuzz input a byte at a time (zeroes once it runs out).
struct FuzzBytes {
    let data: UnsafeRawBufferPointer
    var at = 0
    mutating func byte() -> UInt8 {
        defer { at += 1 }
        return at < data.count ? data[at] : 0
    }
    mutating func small() -> Int { Int(Int8(bitPattern: byte())) }
    mutating func u64() -> UInt64 { (0..<8).reduce(UInt64(0)) { v, _ in v << 8 | UInt64(byte()) } }
}

/// A queue with no device behind it, in a region of its own.
final class FuzzBlockContext: BlockContext {
    let region = DMARegion(anonymousSize: 2 << 20)
    var allocator: DMAAllocator
    let ring: Virtqueue
    let limits = BlockLimits(capacitySectors: 1 << 21, readOnly: false, flush: true, discard: true, writeZeroes: true,
                             sizeMax: nil, segMax: 14, maxDiscardSectors: 256, maxWriteZeroesSectors: 256)
    let partBytes = BlockSlot.dataSize
    let indirect = false
    var address: String { "fuzz" }
    private var claimed: [DMASlice] = []

    init() throws {
        allocator = DMAAllocator(regionSize: region.size)
        ring = try Virtqueue(layout: .split, size: 16, region: region, allocator: &allocator)
    }

    func queue(_ position: Int) -> Virtqueue { ring }
    func notify(_ position: Int) {}
    /// The checks `DeviceDriver.claimRestoredArea` makes.
    func claimRestoredArea(_ area: DMASlice, _ what: String) throws {
        guard area.offset >= 0, area.length > 0, let end = area.end, end <= allocator.cursor,
              !(claimed + [ring.memory.area]).contains(where: { $0.overlaps(area) }) else {
            throw PluginError("\(what) outside the allocated part")
        }
        claimed.append(area)
    }
}

func fuzzBlockRecord(_ data: UnsafeRawBufferPointer) {
    var b = FuzzBytes(data: data)
    guard let ctx = try? FuzzBlockContext(),
          let poolArea = try? ctx.allocator.allocate(BlockSlot.size * 8, alignment: 4096) else { return }
    // Chains the queue says the device holds, with tokens the input picks.
    for _ in 0..<(b.byte() % 5) {
        try? ctx.ring.add([.writable(ctx.region.deviceAddress(poolArea), 1)], token: UInt64(b.byte() % 12))
    }
    let commands: [NBDWire.Command] = [.read, .write, .flush, .trim, .writeZeroes, .disconnect]
    func request() -> PendingRequest {
        var p = PendingRequest(handle: b.u64(), command: commands[Int(b.byte()) % commands.count],
                               offset: UInt64(b.byte()) * 512, length: UInt32(b.byte()) * 4096)
        p.zeroes = b.byte() & 1 != 0
        p.slots = (0..<(b.byte() % 5)).map { _ in b.small() }
        p.submitted = b.small()
        p.outstanding = b.small()
        p.received = Int(b.byte()) * 1000
        p.status = b.byte() % 4
        return p
    }
    var requests: [Int: PendingRequest] = [:]
    for _ in 0..<(b.byte() % 4) { requests[b.small()] = request() }
    var outbox: [OutgoingReply] = []
    for _ in 0..<(b.byte() % 3) {
        var o = OutgoingReply(handle: b.u64(), error: UInt32(b.byte()))
        o.slots = (0..<(b.byte() % 4)).map { _ in b.small() }
        o.lengths = (0..<(b.byte() % 4)).map { _ in b.small() * 1024 }
        o.sent = b.small() * 100
        outbox.append(o)
    }
    let sizes = [BlockSlot.size, BlockSlot.size - 1, 4096]
    var pool = PoolPlacement(DMABufferPool(area: poolArea, bufferSize: BlockSlot.size, segmentSize: nil)!)
    pool.offset += b.small() * 64
    pool.length = BlockSlot.size * Int(b.byte() % 10)
    pool.bufferSize = sizes[Int(b.byte()) % sizes.count]
    let record = BlockQueue.Record(
        position: 0, pool: pool, requests: requests, nextID: b.small(),
        header: [UInt8](repeating: 0, count: Int(b.byte() % 30)),
        receiving: b.byte() & 1 != 0 ? b.small() : nil,
        waiting: b.byte() & 1 != 0 ? request() : nil,
        unsubmitted: (0..<(b.byte() % 3)).map { _ in b.small() },
        sinkRemaining: b.small(), outbox: outbox, counters: .init())
    guard let (ours, peer) = try? UnixSocket.streamPair() else { return }
    defer { try? ours.fd.close(); try? peer.fd.close() }
    guard let q = try? BlockQueue.restore(record, connection: ours, ctx) else { return }
    // Accepted: every slot is free or held exactly once, and the queue works
    // from here on within its own slots.
    let held = record.requests.values.reduce(0) { $0 + $1.slots.count } + record.outbox.reduce(0) { $0 + $1.slots.count }
    precondition(q.pool.freeCount + held == q.pool.count, "restored pool: \(q.pool.freeCount) free + \(held) held != \(q.pool.count)")
    try? q.flushOutbox(ctx)
    try? q.collect(ctx)
}
