import Glibc
import Testing
import VirtioCore
import VirtioSoftDevice
import VirtioSystem
import VirtiodPluginRuntime
@testable import virtiod_block

/// The kernel's side of one ublk queue, played by the test: it hands tags
/// requests (copying a write's data into the tag's buffer first, as
/// ublk_map_io does) and records what the plugin commits.
final class FakeUblkServer: UblkServing {
    let depth: Int
    let completions: EventFD
    private var descriptors: [UblkABI.IODescriptor]
    private(set) var buffers: [Int: UInt64] = [:]
    private(set) var commits: [(tag: Int, result: Int32)] = []
    private var waiting: [(tag: Int, result: Int32)] = []

    init(depth: Int) throws {
        self.depth = depth
        completions = try EventFD()
        descriptors = Array(repeating: UblkABI.IODescriptor(operation: 0, sectors: 0, startSector: 0, bufferAddress: 0), count: depth)
    }

    func fetch(tag: Int, buffer: UInt64) throws { buffers[tag] = buffer }
    func commit(tag: Int, result: Int32, buffer: UInt64) throws {
        commits.append((tag, result))
        buffers[tag] = buffer
    }
    func submit() throws {}
    func nextCompletion() -> (tag: Int, result: Int32)? { waiting.isEmpty ? nil : waiting.removeFirst() }
    func descriptor(_ tag: Int) -> UblkABI.IODescriptor { descriptors[tag] }

    /// The kernel hands `tag` a request.
    func hand(_ tag: Int, _ op: UInt8, sector: UInt64, sectors: UInt32, write data: [UInt8] = []) {
        let buffer = buffers[tag]!
        if !data.isEmpty { data.withUnsafeBytes { UnsafeMutableRawPointer(bitPattern: UInt(buffer))!.copyMemory(from: $0.baseAddress!, byteCount: data.count) } }
        descriptors[tag] = UblkABI.IODescriptor(operation: op, sectors: sectors, startSector: sector, bufferAddress: buffer)
        waiting.append((tag, UblkABI.resultOK))
    }

    /// What the kernel would copy out of `tag`'s buffer for a read's answer.
    func read(_ tag: Int, count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(buffers[tag]!)), count: count))
    }

    func lastResult(_ tag: Int) -> Int32? { commits.last { $0.tag == tag }?.result }
}

@Suite struct UblkQueueTests {
    func queue(_ ctx: SoftBlockContext, depth: Int = 8) throws -> (UblkQueue, FakeUblkServer) {
        let q = UblkQueue(position: 0, pool: try DMABufferPool(allocator: &ctx.allocator, bufferSize: BlockSlot.size, count: depth))
        let server = try FakeUblkServer(depth: depth)
        try q.attach(server, ctx)
        return (q, server)
    }

    @Test(arguments: [(RingLayout.split, true), (.packed, true), (.split, false)])
    func writesAndReadsGoThroughTheTagsBuffers(layout: RingLayout, indirect: Bool) throws {
        let ctx = try SoftBlockContext(layout: layout, indirect: indirect)
        let (q, server) = try queue(ctx)
        #expect(server.buffers.count == 8, "every tag fetches")
        let data = BlockQueueTests.pattern(ctx.partBytes, seed: 5)
        server.hand(3, UblkABI.opWrite, sector: 8, sectors: UInt32(data.count / 512), write: data)
        try q.reap(ctx)
        try q.collect(ctx)
        #expect(server.lastResult(3) == Int32(data.count))
        #expect(Array(ctx.model.storage[4096..<4096 + data.count]) == data)
        server.hand(5, UblkABI.opRead, sector: 8, sectors: UInt32(data.count / 512))
        server.hand(6, UblkABI.opFlush, sector: 0, sectors: 0)
        try q.reap(ctx)
        try q.collect(ctx)
        #expect(server.lastResult(5) == Int32(data.count) && server.read(5, count: data.count) == data)
        #expect(server.lastResult(6) == 0)
        #expect(q.counters.reads == 1 && q.counters.writes == 1 && q.counters.flushes == 1 && q.inFlight == 0)
        #expect(ctx.model.served[.write] == 1 && ctx.model.served[.read] == 1 && ctx.model.served[.flush] == 1)
    }

    @Test func discardsAndZeroingAreOneDeviceRequestEach() throws {
        let ctx = try SoftBlockContext()
        let (q, server) = try queue(ctx)
        server.hand(0, UblkABI.opWrite, sector: 0, sectors: 16, write: BlockQueueTests.pattern(8192, seed: 6))
        try q.reap(ctx)
        try q.collect(ctx)
        server.hand(1, UblkABI.opWriteZeroes, sector: 0, sectors: 8)
        server.hand(2, UblkABI.opDiscard, sector: 8, sectors: 8)
        try q.reap(ctx)
        try q.collect(ctx)
        #expect(server.lastResult(1) == 4096 && server.lastResult(2) == 4096)
        #expect(ctx.model.storage[0..<4096].allSatisfy { $0 == 0 })
        #expect(ctx.model.served[.writeZeroes] == 1 && ctx.model.served[.discard] == 1)
    }

    @Test func badRequestsAreAnsweredWithErrorsAndReachNoDevice() throws {
        let ctx = try SoftBlockContext(sectors: 64, extra: [])
        let (q, server) = try queue(ctx)
        server.hand(0, UblkABI.opRead, sector: 60, sectors: 8)                 // past the end
        server.hand(1, UblkABI.opDiscard, sector: 0, sectors: 8)               // not offered
        server.hand(2, 9, sector: 0, sectors: 1)                               // unknown
        server.hand(3, UblkABI.opFlush, sector: 0, sectors: 0)                 // no F_FLUSH: durable already
        server.hand(4, UblkABI.opWrite, sector: 0, sectors: UInt32(ctx.partBytes / 512 + 1)) // larger than one request
        try q.reap(ctx)
        try q.collect(ctx)
        #expect(server.lastResult(0) == -EIO && server.lastResult(1) == -EOPNOTSUPP && server.lastResult(2) == -EOPNOTSUPP)
        #expect(server.lastResult(3) == 0 && server.lastResult(4) == -EIO)
        #expect(q.counters.refused == 4 && ctx.model.served.isEmpty)
        ctx.limits.readOnly = true
        server.hand(5, UblkABI.opWrite, sector: 0, sectors: 1, write: [UInt8](repeating: 1, count: 512))
        try q.reap(ctx)
        #expect(server.lastResult(5) == -EROFS)
    }

    /// A hand-over: what the device holds is answered, what the kernel
    /// handed over during the pause stays with it (reissued to the
    /// successor) — or, rolled back, goes on.
    @Test func quiesceAnswersWhatTheDeviceHoldsAndLeavesTheRest() throws {
        let ctx = try SoftBlockContext()
        let (q, server) = try queue(ctx)
        server.hand(0, UblkABI.opWrite, sector: 0, sectors: 8, write: BlockQueueTests.pattern(4096, seed: 7))
        try q.reap(ctx)
        #expect(q.atDevice == 1 && server.lastResult(0) == nil)
        try q.quiesce(ctx)
        #expect(server.lastResult(0) == 4096 && q.atDevice == 0)
        server.hand(1, UblkABI.opRead, sector: 0, sectors: 8)
        try q.reap(ctx)
        #expect(server.lastResult(1) == nil && ctx.model.served[.read] == nil, "nothing new reaches the device while quiesced")
        try q.resumeAfterQuiesce(ctx)
        try q.collect(ctx)
        #expect(server.lastResult(1) == 4096 && server.read(1, count: 4096) == BlockQueueTests.pattern(4096, seed: 7))
    }
}
