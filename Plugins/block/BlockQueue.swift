import Glibc
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// One request queue of the disk and the NBD connection it serves (virtio
/// 1.2 §5.2.6; one connection per queue, so the kernel's hardware queue i is
/// device queue i). Requests are read from the connection straight into DMA
/// slots (write payload included), go to the device as one request per
/// slot, and are answered from the slots (read data included): nothing is
/// copied in this process. Replies go out in any order, as NBD allows.
final class BlockQueue {
    let position: Int
    private(set) var connection: UnixSocket
    /// The kernel closed the connection (it gave up waiting for a reply and
    /// sends the request again on another one; or it disconnects): nothing
    /// is read or answered until `replaceConnection`.
    private(set) var closed = false
    /// The kernel sent NBD_CMD_DISC: the closing that follows is the end.
    private(set) var kernelDisconnected = false
    var pool: DMABufferPool
    /// Requests with slots, by id.
    private(set) var requests: [Int: PendingRequest] = [:]
    private var nextID = 1
    /// Which request each slot in use belongs to.
    private var owner: [Int: Int] = [:]
    /// Header bytes read so far (fewer than 28).
    private var header: [UInt8] = []
    /// The write whose payload is being read.
    private var receiving: Int?
    /// Read and checked, waiting for enough free slots (reading stops meanwhile).
    private var waiting: PendingRequest?
    /// Requests with parts not yet added (the ring was full).
    private var unsubmitted: [Int] = []
    /// Payload bytes of a refused write still to be read and dropped.
    private var sinkRemaining = 0
    /// Replies not (fully) sent yet, in order: reading goes on meanwhile.
    /// Never blocking on a full connection matters: the kernel may be
    /// sending on another connection while holding a lock its receiver
    /// needs for the reply at the head of this one.
    private(set) var outbox: [OutgoingReply] = []
    var counters = Counters()
    private var added = false

    struct Counters: Codable, Equatable {
        var requests: UInt64 = 0, reads: UInt64 = 0, writes: UInt64 = 0, flushes: UInt64 = 0
        var discards: UInt64 = 0, writeZeroes: UInt64 = 0, readBytes: UInt64 = 0, writeBytes: UInt64 = 0
        var errors: UInt64 = 0, refused: UInt64 = 0, kicks: UInt64 = 0
        /// Connections the kernel closed, and requests read from them that
        /// were then not answered (the kernel sent them again elsewhere).
        var connectionsLost: UInt64 = 0, dropped: UInt64 = 0

        init() {}

        /// A counter an older plugin's record lacks starts at 0.
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            func v(_ k: CodingKeys) throws -> UInt64 { try c.decodeIfPresent(UInt64.self, forKey: k) ?? 0 }
            requests = try v(.requests); reads = try v(.reads); writes = try v(.writes); flushes = try v(.flushes)
            discards = try v(.discards); writeZeroes = try v(.writeZeroes); readBytes = try v(.readBytes)
            writeBytes = try v(.writeBytes); errors = try v(.errors); refused = try v(.refused); kicks = try v(.kicks)
            connectionsLost = try v(.connectionsLost); dropped = try v(.dropped)
        }

        /// For the report (a queue's counters in `virtioctl status`).
        func values(inFlight: Int) -> [String: UInt64] {
            ["requests": requests, "reads": reads, "writes": writes, "flushes": flushes, "discards": discards,
             "write_zeroes": writeZeroes, "read_bytes": readBytes, "write_bytes": writeBytes,
             "errors": errors, "refused": refused, "in_flight": UInt64(inFlight), "kicks": kicks]
        }
    }

    init(position: Int, connection: UnixSocket, pool: DMABufferPool) {
        self.position = position
        self.connection = connection
        self.pool = pool
    }

    /// Reading stops while a request waits for slots.
    var wantsInput: Bool { !closed && waiting == nil }
    /// Replies wait for room on the connection.
    var wantsOutput: Bool { !closed && !outbox.isEmpty }
    var inFlight: Int { requests.count }

    // MARK: reading requests

    /// Read and start what the connection has, up to `budget` requests.
    func pump(_ ctx: any BlockContext, budget: Int = 64) throws {
        defer { publish(ctx) }
        guard !closed else { return }
        try read(ctx, budget: budget)
        try flushOutbox(ctx)
    }

    private func read(_ ctx: any BlockContext, budget: Int) throws {
        var started = 0
        while started < budget {
            if sinkRemaining > 0 {
                guard try sink() else { return }
                continue
            }
            if let id = receiving {
                guard try receivePayload(id, ctx) else { return }
                continue
            }
            if let w = waiting {
                guard start(w, ctx) else { return }
                waiting = nil
                started += 1
                continue
            }
            guard let r = try readHeader() else { return }
            accept(r, ctx)
        }
    }

    /// The next request header, once all 28 bytes are in.
    private func readHeader() throws -> NBDWire.Request? {
        guard let chunk = try connection.receiveAvailable(upTo: NBDWire.requestSize - header.count) else { return nil }
        if chunk.isEmpty { throw NBDConnectionClosed(position: position, during: header.isEmpty ? nil : "a request header") }
        header += chunk
        guard header.count == NBDWire.requestSize else { return nil }
        defer { header = [] }
        guard let r = NBDWire.parse(header) else {
            throw PluginError("NBD connection \(position): a request header without the request magic; the stream is out of step")
        }
        return r
    }

    /// Check a request and either answer it at once or queue it for slots.
    private func accept(_ r: NBDWire.Request, _ ctx: any BlockContext) {
        counters.requests &+= 1
        let payload = r.command == NBDWire.Command.write.rawValue ? Int(r.length) : 0
        func refuse(_ error: UInt32, _ why: String) {
            counters.refused &+= 1
            PluginLog.warning("block \(ctx.address) queue \(position): \(why); answered with error \(error)")
            sinkRemaining = payload
            outbox.append(OutgoingReply(handle: r.handle, error: error))
        }
        guard let command = NBDWire.Command(rawValue: r.command) else {
            return refuse(NBDWire.einval, "unknown NBD command \(r.command)")
        }
        let limits = ctx.limits
        switch command {
        case .disconnect:
            PluginLog.info("block \(ctx.address) queue \(position): the kernel disconnects")
            kernelDisconnected = true
            return
        case .flush where !limits.flush:
            // Without VIRTIO_BLK_F_FLUSH writes are durable when answered.
            return outbox.append(OutgoingReply(handle: r.handle, error: 0))
        case .trim where !limits.discard, .writeZeroes where !limits.writeZeroes:
            return refuse(NBDWire.enotsup, "\(command) is not offered by the device")
        default: break
        }
        if limits.readOnly, command == .write || command == .trim || command == .writeZeroes {
            return refuse(NBDWire.eperm, "\(command) on a read-only disk")
        }
        if command != .flush {
            let end = r.offset.addingReportingOverflow(UInt64(r.length))
            guard r.offset % 512 == 0, r.length % 512 == 0, !end.overflow, end.partialValue <= limits.capacityBytes else {
                return refuse(NBDWire.einval, "\(command) of \(r.length) bytes at \(r.offset) is not whole sectors within the \(limits.capacityBytes)-byte disk")
            }
            if r.length == 0 { return outbox.append(OutgoingReply(handle: r.handle, error: 0)) }
        }
        let p = PendingRequest(handle: r.handle, command: command, offset: r.offset, length: r.length)
        let parts = p.parts(partBytes: ctx.partBytes, limits: limits).count
        guard parts <= pool.count else {
            return refuse(NBDWire.einval, "\(command) of \(r.length) bytes needs \(parts) slots; the queue has \(pool.count)")
        }
        waiting = p
    }

    /// Give `p` its slots and go on with it; false if there are not enough free.
    private func start(_ r: PendingRequest, _ ctx: any BlockContext) -> Bool {
        var p = r
        let parts = p.parts(partBytes: ctx.partBytes, limits: ctx.limits).count
        guard pool.freeCount >= parts else { return false }
        p.slots = (0..<parts).map { _ in pool.take()! }
        let id = nextID
        nextID &+= 1
        for s in p.slots { owner[s] = id }
        requests[id] = p
        if p.command == .write {
            receiving = id
        } else {
            submit(id, ctx)
        }
        return true
    }

    /// Read write payload straight into the request's slots; true once a
    /// request's payload is complete (it is then submitted).
    private func receivePayload(_ id: Int, _ ctx: any BlockContext) throws -> Bool {
        guard var p = requests[id] else { receiving = nil; return true }
        while p.received < Int(p.length) {
            let part = p.received / ctx.partBytes, within = p.received % ctx.partBytes
            let partLength = min(ctx.partBytes, Int(p.length) - part * ctx.partBytes)
            let target = DMASlice(offset: pool.slice(p.slots[part]).offset + within, length: partLength - within)
            guard let n = try connection.receiveAvailable(into: ctx.region, target) else {
                requests[id] = p
                return false
            }
            if n == 0 { throw NBDConnectionClosed(position: position, during: "a write's payload") }
            p.received += n
        }
        receiving = nil
        // A write of zeroes costs the device nothing to transfer (blkdiscard -z, mkfs).
        if ctx.limits.writeZeroes, Int(ctx.limits.maxWriteZeroesSectors) * 512 >= ctx.partBytes {
            let parts = p.parts(partBytes: ctx.partBytes, limits: ctx.limits)
            p.zeroes = parts.indices.allSatisfy { ctx.region.isZero(pool.slice(p.slots[$0]), count: parts[$0].length) }
        }
        requests[id] = p
        submit(id, ctx)
        return true
    }

    /// Drop a refused write's payload.
    private func sink() throws -> Bool {
        guard let dropped = try connection.receiveAvailable(upTo: min(sinkRemaining, 65536)) else { return false }
        if dropped.isEmpty { throw NBDConnectionClosed(position: position, during: "a refused write's payload") }
        sinkRemaining -= dropped.count
        return true
    }

    // MARK: the device

    /// Add the parts of request `id` not added yet, as far as the ring has room.
    func submit(_ id: Int, _ ctx: any BlockContext) {
        guard var p = requests[id] else { return }
        let parts = p.parts(partBytes: ctx.partBytes, limits: ctx.limits)
        let queue = ctx.queue(position)
        let type = p.deviceType
        while p.submitted < parts.count {
            let part = parts[p.submitted]
            guard BlockDeviceIO.add(type, sector: part.sector, length: part.length, slot: pool.slice(p.slots[p.submitted]),
                                    token: UInt64(p.slots[p.submitted]), ctx, to: queue) else { break }
            p.submitted += 1
            p.outstanding += 1
            added = true
        }
        requests[id] = p
        if p.submitted < parts.count {
            if !unsubmitted.contains(id) { unsubmitted.append(id) }
        } else {
            unsubmitted.removeAll { $0 == id }
        }
    }

    /// Make what was added visible; kick the device if it asks.
    func publish(_ ctx: any BlockContext) {
        guard added else { return }
        added = false
        if BlockDeviceIO.publish(ctx, position) { counters.kicks &+= 1 }
    }

    /// Take what the device returned; answer requests whose parts are all
    /// back; then add what waited for room and read on.
    func collect(_ ctx: any BlockContext) throws {
        // (`popUsed` takes a second look before it says the queue is empty:
        // a completion racing the last pop raises no interrupt.)
        try drain(ctx.queue(position), ctx)
        // Answers first (their slots free up), then what waited, then read on.
        try flushOutbox(ctx)
        for id in unsubmitted { submit(id, ctx) }
        try pump(ctx)
    }

    private func drain(_ queue: Virtqueue, _ ctx: any BlockContext) throws {
        while let used = try queue.popUsed() {
            // Tokens beyond the pool are the runtime's own requests (GET_ID at bring-up).
            guard used.token < UInt64(pool.count) else { continue }
            let slot = Int(used.token)
            guard let id = owner[slot], var p = requests[id], let part = p.slots.firstIndex(of: slot),
                  part < p.submitted, p.outstanding > 0 else {
                PluginLog.warning("block \(ctx.address) queue \(position): slot \(slot) came back with no request waiting for it; ignored")
                continue
            }
            let length = p.parts(partBytes: ctx.partBytes, limits: ctx.limits)[part].length
            let status = BlockDeviceIO.status(p.deviceType, length: length, slot: pool.slice(slot), usedLength: used.length, ctx)
            if status != BlockStatus.ok { p.status = max(p.status, status) }
            p.outstanding -= 1
            requests[id] = p
            if p.connectionLost == true {
                if p.outstanding == 0 { release(id) }
            } else if p.isDone {
                finish(id, ctx)
            }
        }
    }

    /// Forget request `id` without an answer and free its slots.
    private func release(_ id: Int) {
        guard let p = requests.removeValue(forKey: id) else { return }
        counters.dropped &+= 1
        for s in p.slots { owner[s] = nil; pool.give(s) }
    }

    /// Answer request `id` and free its slots.
    private func finish(_ id: Int, _ ctx: any BlockContext) {
        guard let p = requests.removeValue(forKey: id) else { return }
        let error = p.replyError
        if error != 0 {
            counters.errors &+= 1
            PluginLog.warning("block \(ctx.address) queue \(position): \(p.command) of \(p.length) bytes at \(p.offset) failed (device status \(p.status))")
        }
        switch p.command {
        case .read: counters.reads &+= 1; if error == 0 { counters.readBytes &+= UInt64(p.length) }
        case .write:
            if p.zeroes { counters.writeZeroes &+= 1 } else { counters.writes &+= 1 }
            if error == 0 { counters.writeBytes &+= UInt64(p.length) }
        case .flush, .disconnect: counters.flushes &+= 1
        case .trim: counters.discards &+= 1
        case .writeZeroes: counters.writeZeroes &+= 1
        }
        // The slots stay the request's until its reply (a read's data comes from them) is sent.
        var lengths: [Int] = []
        if p.command == .read, error == 0 {
            lengths = p.parts(partBytes: ctx.partBytes, limits: ctx.limits).map(\.length)
        }
        for s in p.slots { owner[s] = nil }
        // It goes out with the others of this round (one sendmsg) when `pump` or `collect` ends.
        outbox.append(OutgoingReply(handle: p.handle, error: error, slots: p.slots, lengths: lengths))
    }

    /// Send waiting replies, header and data straight from the slots, as far
    /// as the connection takes them; a sent reply frees its slots.
    func flushOutbox(_ ctx: any BlockContext) throws {
        while !outbox.isEmpty {
            let batch = outbox.prefix(64)
            var pieces: [StreamPiece] = []
            for r in batch {
                pieces.append(.bytes(NBDWire.reply(error: r.error, handle: r.handle)))
                for (slot, length) in zip(r.slots, r.lengths) {
                    pieces.append(.dma(DMASlice(offset: pool.slice(slot).offset, length: length)))
                }
            }
            let n: Int
            do { n = try connection.sendAvailable(pieces, from: ctx.region, skipping: batch.first!.sent) } catch {
                if let e = error as? SystemCallError, e.errno == .brokenPipe || e.errno == .connectionReset {
                    throw NBDConnectionClosed(position: position, during: "a reply")
                }
                throw PluginError("NBD connection \(position): reply not sent: \(error)")
            }
            guard n > 0 else { return }
            var left = n
            while left > 0, !outbox.isEmpty {
                let remaining = outbox[0].total - outbox[0].sent
                guard left >= remaining else {
                    outbox[0].sent += left
                    break
                }
                left -= remaining
                for s in outbox.removeFirst().slots { pool.give(s) }
            }
        }
    }

    // MARK: the connection

    /// The kernel closed the connection. What was read from it cannot be
    /// answered any more — the kernel sends those requests again on another
    /// connection (a reply to one here would now be refused, and would make
    /// it drop the connection that carries it): requests not at the device
    /// go at once, those at the device go when it returns them, waiting
    /// replies are not sent. What it was doing, for the log.
    func connectionLost() -> String {
        let atDevice = requests.values.filter { $0.outstanding > 0 }.count
        let summary = "\(counters.requests) request(s) read so far, \(requests.count) unanswered (\(atDevice) at the device), "
            + "\(outbox.count) answered and not yet sent"
        closed = true
        counters.connectionsLost &+= 1
        header = []
        sinkRemaining = 0
        receiving = nil
        if waiting != nil { counters.dropped &+= 1 }
        waiting = nil
        for r in outbox { for s in r.slots { pool.give(s) } }
        counters.dropped &+= UInt64(outbox.count)
        outbox = []
        for (id, var p) in requests {
            if p.outstanding == 0 {
                release(id)
            } else {
                p.connectionLost = true
                requests[id] = p
            }
        }
        // What the device holds comes back and is dropped; nothing more is added.
        unsubmitted = []
        return summary
    }

    /// A fresh connection from the supervisor (the kernel took its other end).
    func replaceConnection(_ fresh: UnixSocket) {
        try? connection.fd.close()
        connection = fresh
        closed = false
        kernelDisconnected = false
    }

    // MARK: hand-over

    struct Record: Codable {
        var position: Int
        var pool: PoolPlacement
        var requests: [Int: PendingRequest]
        var nextID: Int
        var header: [UInt8]
        var receiving: Int?
        var waiting: PendingRequest?
        var unsubmitted: [Int]
        var sinkRemaining: Int
        var outbox: [OutgoingReply]
        var counters: Counters
    }

    var record: Record {
        Record(position: position, pool: PoolPlacement(pool), requests: requests, nextID: nextID, header: header,
               receiving: receiving, waiting: waiting, unsubmitted: unsubmitted, sinkRemaining: sinkRemaining,
               outbox: outbox, counters: counters)
    }

    /// Continue from a predecessor's record (shared memory: checked against
    /// the queue's own state before anything is used). Throws, touching
    /// nothing, if anything does not fit.
    static func restore(_ r: Record, connection: UnixSocket, _ ctx: any BlockContext) throws -> BlockQueue {
        let what = "queue \(r.position)"
        let area = DMASlice(offset: r.pool.offset, length: r.pool.length)
        guard r.pool.bufferSize == BlockSlot.size,
              let layout = DMABufferPool(area: area, bufferSize: BlockSlot.size, segmentSize: ctx.region.segmentSize),
              layout.count > 0 else {
            throw PluginError("\(what): the record's slot pool is not one of this plugin's")
        }
        let count = layout.count
        var held: [Int: Int] = [:]
        for (id, p) in r.requests {
            let parts = p.parts(partBytes: ctx.partBytes, limits: ctx.limits).count
            guard id > 0, id < r.nextID, p.slots.count == parts, p.submitted >= 0, p.submitted <= parts,
                  p.outstanding >= 0, p.outstanding <= p.submitted, p.received >= 0, p.received <= Int(p.length),
                  p.status <= BlockStatus.unsupported else {
                throw PluginError("\(what): request \(id) in the record does not add up")
            }
            for s in p.slots {
                guard s >= 0, s < count, held.updateValue(id, forKey: s) == nil else {
                    throw PluginError("\(what): slot \(s) out of range or held twice in the record")
                }
            }
        }
        var replying = Set<Int>()
        for o in r.outbox {
            guard o.lengths.count <= o.slots.count, o.lengths.allSatisfy({ (0...BlockSlot.dataSize).contains($0) }),
                  o.sent >= 0, o.sent < o.total else {
                throw PluginError("\(what): a reply waiting in the record does not add up")
            }
            for s in o.slots {
                guard s >= 0, s < count, held[s] == nil, replying.insert(s).inserted else {
                    throw PluginError("\(what): slot \(s) out of range or held twice in the record")
                }
            }
        }
        if let id = r.receiving {
            guard let p = r.requests[id], p.command == .write, p.submitted == 0 else {
                throw PluginError("\(what): the write being received in the record is not there")
            }
        }
        for id in r.unsubmitted {
            guard let p = r.requests[id], p.submitted < p.slots.count else { throw PluginError("\(what): bad unsubmitted entry") }
        }
        guard r.header.count < NBDWire.requestSize, r.sinkRemaining >= 0, r.nextID > 0, r.nextID < 1 << 62 else {
            throw PluginError("\(what): the record's reading state does not add up")
        }
        // A request waiting for slots has nothing but what the kernel asked:
        // taken from the record, it starts afresh (and must fit the pool).
        let waiting = r.waiting.map { PendingRequest(handle: $0.handle, command: $0.command, offset: $0.offset, length: $0.length) }
        if let w = waiting, w.parts(partBytes: ctx.partBytes, limits: ctx.limits).count > count {
            throw PluginError("\(what): the request waiting for slots in the record needs more than the pool has")
        }
        // What the queue says the device holds must be exactly the parts the record says are out.
        let queue = ctx.queue(r.position)
        var outByRequest: [Int: Int] = [:]
        for chain in queue.state.chains where chain.inFlight && chain.token < (1 << 40) {
            guard chain.token < UInt64(count), let id = held[Int(chain.token)] else {
                throw PluginError("\(what): a buffer in flight (token \(chain.token)) is no request's in the record")
            }
            outByRequest[id, default: 0] += 1
        }
        for (id, p) in r.requests where outByRequest[id, default: 0] != p.outstanding {
            throw PluginError("\(what): request \(id) has \(outByRequest[id, default: 0]) part(s) in flight, the record says \(p.outstanding)")
        }
        try ctx.claimRestoredArea(area, "the \(what) slot pool")
        guard let pool = DMABufferPool(area: area, bufferSize: BlockSlot.size, segmentSize: ctx.region.segmentSize,
                                       inUse: Array(held.keys) + Array(replying)) else {
            throw PluginError("\(what): the slot pool does not fit")
        }
        let q = BlockQueue(position: r.position, connection: connection, pool: pool)
        q.requests = r.requests
        q.nextID = r.nextID
        q.owner = held
        q.header = r.header
        q.receiving = r.receiving
        q.waiting = waiting
        q.unsubmitted = r.unsubmitted
        q.sinkRemaining = r.sinkRemaining
        q.outbox = r.outbox
        q.counters = r.counters
        return q
    }
}

/// The kernel closed connection `position` (seen as end of file, or a
/// broken pipe when replying), `during` something half read or sent.
struct NBDConnectionClosed: Error, CustomStringConvertible {
    let position: Int
    let during: String?
    var description: String { "NBD connection \(position): closed by the kernel" + (during.map { " in \($0)" } ?? "") }
}

/// What a queue needs of its data path and driver while it works (the
/// driver's in the plugin, a software device's in tests).
protocol BlockContext {
    var limits: BlockLimits { get }
    /// Bytes per device read/write request (`BlockLimits.partBytes`).
    var partBytes: Int { get }
    /// VIRTIO_F_INDIRECT_DESC negotiated: a request takes one ring slot.
    var indirect: Bool { get }
    var region: DMARegion { get }
    /// The device, for log lines.
    var address: String { get }
    func queue(_ position: Int) -> Virtqueue
    func notify(_ position: Int)
    /// Accept DMA memory a hand-over record names (`DeviceDriver.claimRestoredArea`).
    func claimRestoredArea(_ area: DMASlice, _ what: String) throws
}

/// The plugin's context: the driver's device and queues.
struct DriverBlockContext: BlockContext {
    let driver: DeviceDriver
    let limits: BlockLimits
    let partBytes: Int
    let indirect: Bool
    var region: DMARegion { driver.device.region }
    var address: String { driver.device.info.address }
    func queue(_ position: Int) -> Virtqueue { driver.queues[position].queue }
    func notify(_ position: Int) { driver.transport.notify(driver.queues[position].index) }
    func claimRestoredArea(_ area: DMASlice, _ what: String) throws { try driver.claimRestoredArea(area, what) }
}
