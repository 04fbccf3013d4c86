import FoundationEssentials
import Glibc
import Testing
import VirtioCore
import VirtioSoftDevice
import VirtioSystem
import VirtiodPluginRuntime
@testable import virtiod_block

/// A request queue over a RAM disk (the software virtio-blk device, served
/// synchronously on each notify) and a socketpair on whose other end the
/// test speaks NBD as the kernel would.
final class SoftBlockContext: BlockContext {
    let device: SoftDevice
    let model: RAMBlockModel
    let queues: [Virtqueue]
    var allocator: DMAAllocator
    var limits: BlockLimits
    let partBytes: Int
    let indirect: Bool
    var region: DMARegion { device.region }
    var address: String { "soft" }
    private var claimed: [DMASlice] = []

    init(layout: RingLayout = .split, indirect: Bool = true, sectors: Int = 4096, extra: BlockFeatures = [.flush, .discard, .writeZeroes]) throws {
        let base = TransportFeatures.version1.rawValue | TransportFeatures.accessPlatform.rawValue
        let wanted = TransportFeatures.ringPacked.rawValue | (indirect ? TransportFeatures.indirectDescriptors.rawValue : 0) | extra.rawValue
        model = RAMBlockModel(sectors: sectors, features: base | wanted)
        device = SoftDevice(model: model, region: DMARegion(anonymousSize: 16 << 20))
        var alloc = DMAAllocator(regionSize: device.region.size)
        var made: [Virtqueue] = []
        let negotiated = try DeviceInitializer(transport: device).run(
            features: FeatureRequest(required: base | (layout == .packed ? TransportFeatures.ringPacked.rawValue : 0), wanted: wanted & ~TransportFeatures.ringPacked.rawValue)
        ) { [device] negotiated in
            let q = try Virtqueue(layout: layout, size: device.maxQueueSize(0), region: device.region, allocator: &alloc,
                                  options: QueueOptions(negotiated: negotiated))
            try device.setUpQueue(0, size: q.size, addresses: q.addresses, msixVector: 0)
            made.append(q)
        }
        queues = made
        allocator = alloc
        limits = try BlockLimits.read(device, negotiated: negotiated)
        self.indirect = TransportFeatures(rawValue: negotiated).contains(.indirectDescriptors)
        partBytes = limits.partBytes(slotData: BlockSlot.dataSize, maxDataSegments: self.indirect ? BlockRequestShape.maxDataSegments : 4)
    }

    func queue(_ position: Int) -> Virtqueue { queues[position] }
    func notify(_ position: Int) { device.notify(position) }
    func claimRestoredArea(_ area: DMASlice, _ what: String) throws {
        guard !claimed.contains(where: { $0.overlaps(area) }) else { throw PluginErrorForTests(what) }
        claimed.append(area)
    }

    func makeQueue(_ connection: UnixSocket, slots: Int = 16) throws -> BlockQueue {
        BlockQueue(position: 0, connection: connection,
                   pool: try DMABufferPool(allocator: &allocator, bufferSize: BlockSlot.size, count: slots))
    }
}

struct PluginErrorForTests: Error { let what: String; init(_ w: String) { what = w } }

/// The kernel's end of one NBD connection.
struct KernelSide {
    let socket: UnixSocket
    var handle: UInt64 = 0x1000

    mutating func send(_ command: NBDWire.Command, offset: UInt64, length: Int, payload: [UInt8] = [], rawCommand: UInt16? = nil) -> UInt64 {
        handle += 1
        let r = NBDWire.Request(command: rawCommand ?? command.rawValue, flags: 0, handle: handle, offset: offset, length: UInt32(length))
        write(NBDWire.request(r) + payload)
        return handle
    }

    func write(_ bytes: [UInt8]) {
        let n = bytes.withUnsafeBytes { Glibc.send(socket.fd.rawValue, $0.baseAddress, $0.count, 0) }
        precondition(n == bytes.count)
    }

    /// The next reply (data follows only for a successful read of `dataLength`).
    func reply(dataLength: Int = 0) -> (error: UInt32, handle: UInt64, data: [UInt8])? {
        guard let head = read(NBDWire.replySize), NBDWire.be32(head, 0) == NBDWire.replyMagic else { return nil }
        let error = NBDWire.be32(head, 4)
        let data = error == 0 && dataLength > 0 ? read(dataLength) ?? [] : []
        return (error, NBDWire.raw64(head, 8), data)
    }

    /// What is waiting to be read now (appended to `into`).
    func readAvailable(into buffer: inout [UInt8]) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(socket.fd.rawValue, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT)) }
            guard n > 0 else { return }
            buffer += chunk[0..<n]
        }
    }

    /// Nothing waiting to be read.
    var quiet: Bool {
        var b = [UInt8](repeating: 0, count: 1)
        return b.withUnsafeMutableBytes { recv(socket.fd.rawValue, $0.baseAddress, 1, CInt(MSG_DONTWAIT) | CInt(MSG_PEEK)) } < 0
    }

    private func read(_ count: Int) -> [UInt8]? {
        var b = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = b.withUnsafeMutableBytes { recv(socket.fd.rawValue, $0.baseAddress! + got, count - got, 0) }
            guard n > 0 else { return nil }
            got += n
        }
        return b
    }
}

@Suite struct BlockQueueTests {
    static func pattern(_ n: Int, seed: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed &* 7 &+ $0 >> 9) } }

    func pair() throws -> (UnixSocket, KernelSide) {
        let (a, b) = try UnixSocket.streamPair()
        return (a, KernelSide(socket: b))
    }

    @Test(arguments: [(RingLayout.split, true), (.packed, true), (.split, false)])
    func writesAndReadsSpanningSeveralPartsReachTheDisk(layout: RingLayout, indirect: Bool) throws {
        let ctx = try SoftBlockContext(layout: layout, indirect: indirect)
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours)
        let data = Self.pattern(200 << 10, seed: 1) // 4 parts of 64 KiB
        let w = kernel.send(.write, offset: 4096, length: data.count, payload: data)
        try q.pump(ctx)
        try q.collect(ctx)
        let wr = try #require(kernel.reply())
        #expect(wr.error == 0 && wr.handle == w)
        #expect(Array(ctx.model.storage[4096..<4096 + data.count]) == data)
        let r = kernel.send(.read, offset: 4096, length: data.count)
        try q.pump(ctx)
        try q.collect(ctx)
        let rr = try #require(kernel.reply(dataLength: data.count))
        #expect(rr.error == 0 && rr.handle == r && rr.data == data)
        let f = kernel.send(.flush, offset: 0, length: 0)
        try q.pump(ctx)
        try q.collect(ctx)
        #expect(kernel.reply()?.handle == f)
        #expect(q.counters.reads == 1 && q.counters.writes == 1 && q.counters.flushes == 1)
        #expect(q.counters.readBytes == UInt64(data.count) && q.counters.writeBytes == UInt64(data.count))
        #expect(q.inFlight == 0 && q.pool.freeCount == q.pool.count)
        #expect(ctx.model.served[.write] == 4 && ctx.model.served[.read] == 4 && ctx.model.served[.flush] == 1)
    }

    @Test func zeroWritesBecomeWriteZeroesAndTrimsBecomeDiscards() throws {
        let ctx = try SoftBlockContext()
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours)
        _ = kernel.send(.write, offset: 0, length: 8192, payload: Self.pattern(8192, seed: 2))
        _ = kernel.send(.write, offset: 0, length: 4096, payload: [UInt8](repeating: 0, count: 4096))
        _ = kernel.send(.trim, offset: 4096, length: 4096)
        try q.pump(ctx)
        try q.collect(ctx)
        for _ in 0..<3 { #expect(kernel.reply()?.error == 0) }
        #expect(ctx.model.storage[0..<8192].allSatisfy { $0 == 0 })
        #expect(ctx.model.served[.writeZeroes] == 1 && ctx.model.served[.discard] == 1 && ctx.model.served[.write] == 1)
        #expect(q.counters.writeZeroes == 1 && q.counters.discards == 1 && q.counters.writes == 1)
    }

    @Test func badRequestsAreAnsweredWithErrorsAndTheStreamStaysInStep() throws {
        let ctx = try SoftBlockContext(sectors: 64)
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours)
        // Past the end, not whole sectors, an unknown command: errors, no device I/O.
        let beyond = kernel.send(.read, offset: 64 * 512, length: 512)
        let odd = kernel.send(.write, offset: 100, length: 512, payload: Self.pattern(512, seed: 3))
        let unknown = kernel.send(.read, offset: 0, length: 0, rawCommand: 42)
        let fine = kernel.send(.read, offset: 0, length: 512)
        try q.pump(ctx)
        try q.collect(ctx)
        #expect(kernel.reply().map { ($0.error, $0.handle) } ?? (0, 0) == (NBDWire.einval, beyond))
        #expect(kernel.reply().map { ($0.error, $0.handle) } ?? (0, 0) == (NBDWire.einval, odd))
        #expect(kernel.reply().map { ($0.error, $0.handle) } ?? (0, 0) == (NBDWire.einval, unknown))
        #expect(kernel.reply(dataLength: 512).map { ($0.error, $0.handle) } ?? (1, 0) == (0, fine))
        #expect(q.counters.refused == 3 && ctx.model.served[.read] == 1 && ctx.model.served[.write] == nil)
        // A read-only disk refuses writes (their payload is read and dropped).
        ctx.limits.readOnly = true
        let ro = kernel.send(.write, offset: 0, length: 512, payload: Self.pattern(512, seed: 4))
        let after = kernel.send(.read, offset: 0, length: 512)
        try q.pump(ctx)
        try q.collect(ctx)
        #expect(kernel.reply()?.error == NBDWire.eperm)
        #expect(kernel.reply(dataLength: 512)?.handle == after)
        _ = ro
        // A header without the magic: the stream is out of step; the queue stops.
        kernel.write([UInt8](repeating: 0xab, count: NBDWire.requestSize))
        #expect(throws: PluginError.self) { try q.pump(ctx) }
    }

    @Test func aRequestWaitsForSlotsAndReadingResumesWhenTheyFree() throws {
        let ctx = try SoftBlockContext()
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours, slots: 2)
        let big = kernel.send(.read, offset: 0, length: 2 * 65536) // both slots
        let next = kernel.send(.read, offset: 0, length: 512)
        try q.pump(ctx)
        // The first took both slots (the device finished it, nobody collected
        // yet); the second waits for slots, and reading has stopped.
        #expect(!q.wantsInput && q.inFlight == 1)
        try q.collect(ctx)
        #expect(kernel.reply(dataLength: 2 * 65536)?.handle == big)
        try q.collect(ctx)
        #expect(kernel.reply(dataLength: 512)?.handle == next)
        // More than the whole pool can never be served: refused, not waited for.
        let huge = kernel.send(.read, offset: 0, length: 3 * 65536)
        try q.pump(ctx)
        #expect(kernel.reply()?.error == NBDWire.einval)
        _ = huge
    }

    /// The kernel gave up on a request, sent it again elsewhere and shut this
    /// connection down: what was read from it is dropped (a request at the
    /// device when its parts come back, a half-received write at once), no
    /// reply goes anywhere, every slot comes back, and a fresh connection is
    /// served as before.
    @Test func aConnectionTheKernelClosesDropsWhatItReadAndAFreshOneServes() throws {
        let ctx = try SoftBlockContext()
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours)
        _ = kernel.send(.read, offset: 0, length: 65536)
        _ = kernel.send(.write, offset: 1 << 20, length: 2 * 65536, payload: Self.pattern(70000, seed: 3))
        try q.pump(ctx) // the read is at the device (done, not collected), the write half received
        #expect(q.inFlight == 2)
        kernel.socket.shutdownBoth()
        #expect(throws: NBDConnectionClosed.self) { try q.pump(ctx) }
        let summary = q.connectionLost()
        #expect(summary.contains("2 unanswered (1 at the device)"))
        #expect(q.closed && !q.wantsInput && !q.wantsOutput && q.inFlight == 1)
        try q.collect(ctx) // the device returns the read: dropped, no reply
        #expect(q.inFlight == 0 && q.pool.freeCount == q.pool.count)
        #expect(q.counters.dropped == 2 && q.counters.connectionsLost == 1)
        var stale: [UInt8] = []
        kernel.readAvailable(into: &stale)
        #expect(stale.isEmpty)

        let (fresh, kernel1) = try pair()
        var renewed = kernel1
        q.replaceConnection(fresh)
        #expect(!q.closed && q.wantsInput)
        let data = Self.pattern(4096, seed: 8)
        let w = renewed.send(.write, offset: 8192, length: data.count, payload: data)
        try q.pump(ctx)
        try q.collect(ctx)
        #expect(renewed.reply()?.handle == w)
        let r = renewed.send(.read, offset: 8192, length: data.count)
        try q.pump(ctx)
        try q.collect(ctx)
        let answer = renewed.reply(dataLength: data.count)
        #expect(answer?.handle == r && answer?.data == data)
    }

    /// A reply bigger than the connection holds waits in the outbox while
    /// the queue reads and serves the next request (blocking there could
    /// deadlock against the kernel), and goes out as the kernel reads.
    @Test func aReplyTheConnectionCannotTakeWaitsWhileReadingGoesOn() throws {
        let ctx = try SoftBlockContext()
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours, slots: 16)
        let data = Self.pattern(8 * 65536, seed: 9)
        try writeLarge(data, &kernel, q, ctx)
        let big = kernel.send(.read, offset: 0, length: data.count)
        try q.pump(ctx)
        try q.collect(ctx)
        #expect(q.wantsOutput)
        let small = kernel.send(.read, offset: 0, length: 4096)
        try q.pump(ctx)
        try q.collect(ctx)
        #expect(q.outbox.count == 2) // read and answered, queued behind the big one
        var received: [UInt8] = []
        let expected = 2 * NBDWire.replySize + data.count + 4096
        for _ in 0..<1000 where received.count < expected {
            kernel.readAvailable(into: &received)
            try q.flushOutbox(ctx)
        }
        #expect(received.count == expected && !q.wantsOutput)
        #expect(NBDWire.raw64(received, 8) == big && Array(received[16..<(16 + data.count)]) == data)
        #expect(NBDWire.raw64(received, 16 + data.count + 8) == small)
        #expect(q.pool.freeCount == q.pool.count)
    }

    /// A successor continues from the record: a write half received, and
    /// one the device finished but nobody collected, are each answered once.
    @Test func handOverMidRequestAnswersEverythingOnce() throws {
        let ctx = try SoftBlockContext()
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours)
        let first = Self.pattern(65536, seed: 5), second = Self.pattern(3 * 65536, seed: 6)
        let done = kernel.send(.write, offset: 0, length: first.count, payload: first)
        let half = kernel.send(.write, offset: 1 << 20, length: second.count, payload: Array(second.prefix(70000)))
        try q.pump(ctx) // first submitted (the device finished it), second half read
        #expect(q.inFlight == 2 && kernel.quiet)
        let record = try JSONDecoder().decode(BlockQueue.Record.self, from: JSONEncoder().encode(q.record))
        let successor = try BlockQueue.restore(record, connection: ours, ctx)
        kernel.write(Array(second.dropFirst(70000)))
        try successor.collect(ctx)
        try successor.collect(ctx)
        var handles = [kernel.reply()?.handle, kernel.reply()?.handle]
        handles.sort { ($0 ?? 0) < ($1 ?? 0) }
        #expect(handles == [done, half])
        #expect(kernel.quiet)
        #expect(Array(ctx.model.storage[0..<first.count]) == first)
        #expect(Array(ctx.model.storage[(1 << 20)..<(1 << 20) + second.count]) == second)
        #expect(successor.inFlight == 0 && successor.pool.freeCount == successor.pool.count)
    }

    /// A reply half sent when the plugin is replaced is finished by the successor, byte-exact.
    @Test func aHalfSentReplyIsFinishedByTheSuccessor() throws {
        let ctx = try SoftBlockContext()
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours, slots: 16)
        let data = Self.pattern(8 * 65536, seed: 10)
        try writeLarge(data, &kernel, q, ctx)
        let big = kernel.send(.read, offset: 0, length: data.count)
        try q.pump(ctx)
        try q.collect(ctx)
        let waiting = try #require(q.outbox.first)
        #expect(waiting.sent > 0 && waiting.sent < waiting.total)
        let record = try JSONDecoder().decode(BlockQueue.Record.self, from: JSONEncoder().encode(q.record))
        let successor = try BlockQueue.restore(record, connection: ours, ctx)
        var received: [UInt8] = []
        for _ in 0..<1000 where received.count < waiting.total {
            kernel.readAvailable(into: &received)
            try successor.flushOutbox(ctx)
        }
        kernel.readAvailable(into: &received)
        #expect(received.count == waiting.total && NBDWire.raw64(received, 8) == big)
        #expect(Array(received[16...]) == data)
        #expect(successor.pool.freeCount == successor.pool.count)
    }

    @Test func aRecordThatDoesNotAddUpIsRefused() throws {
        let ctx = try SoftBlockContext()
        let (ours, kernel0) = try pair()
        var kernel = kernel0
        let q = try ctx.makeQueue(ours)
        _ = kernel.send(.write, offset: 0, length: 65536, payload: Self.pattern(65536, seed: 7))
        try q.pump(ctx)
        let good = q.record
        var twice = good
        let id = try #require(twice.requests.keys.first)
        twice.requests[id]!.slots = [0]
        twice.requests[id + 1] = twice.requests[id]
        twice.nextID = id + 2
        func refusal(_ r: BlockQueue.Record) -> String {
            (#expect(throws: PluginError.self) { try BlockQueue.restore(r, connection: ours, ctx) })?.description ?? ""
        }
        #expect(refusal(twice).contains("held twice"))
        var noneOut = good
        noneOut.requests[id]!.outstanding = 0
        #expect(refusal(noneOut).contains("1 part(s) in flight, the record says 0"))
        var badPool = good
        badPool.pool.bufferSize = 4096
        #expect(refusal(badPool).contains("not one of this plugin's"))
        var waitingTooBig = good
        waitingTooBig.waiting = PendingRequest(handle: 1, command: .read, offset: 0, length: 64 << 20)
        #expect(refusal(waitingTooBig).contains("needs more than the pool has"))
        // The record as it was is taken (last: a restore claims the pool's memory).
        _ = try BlockQueue.restore(good, connection: ours, ctx)
    }

    /// Write `data` at 0 through the queue, the payload fed as the socket
    /// takes it (it holds less than a large write), until it is answered.
    func writeLarge(_ data: [UInt8], _ kernel: inout KernelSide, _ q: BlockQueue, _ ctx: SoftBlockContext) throws {
        let handle = kernel.send(.write, offset: 0, length: data.count, payload: [])
        var sent = 0
        while sent < data.count {
            let n = data[sent...].withUnsafeBytes { Glibc.send(kernel.socket.fd.rawValue, $0.baseAddress, min($0.count, 65536), CInt(MSG_DONTWAIT)) }
            if n > 0 { sent += n }
            try q.pump(ctx)
        }
        try q.collect(ctx)
        let r = try #require(kernel.reply())
        #expect(r.error == 0 && r.handle == handle)
    }
}
