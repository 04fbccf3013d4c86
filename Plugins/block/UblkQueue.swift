import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// What a queue needs of its side of a ublk hardware queue
/// (`UblkServerQueue`; a fake in tests).
protocol UblkServing: AnyObject {
    var depth: Int { get }
    var completions: EventFD { get }
    func fetch(tag: Int, buffer: UInt64) throws
    func commit(tag: Int, result: Int32, buffer: UInt64) throws
    func submit() throws
    func nextCompletion() -> (tag: Int, result: Int32)?
    func descriptor(_ tag: Int) -> UblkABI.IODescriptor
}

extension UblkServerQueue: UblkServing {}

/// One request queue of the disk serving ublk hardware queue `position`
/// (virtio 1.2 §5.2.6; Documentation/block/ublk.rst). Tag t's request
/// lives in slot t: the kernel copies a write's data into the slot's data
/// area before it hands the tag over, the device reads or writes the same
/// bytes, and the kernel copies a read's data out of it when the answer is
/// committed — nothing is copied in this process. Each ublk request is one
/// device request: the supervisor limits requests to what one slot and
/// one chain carry (`request_bytes`, discard and write-zeroes limits).
final class UblkQueue {
    let position: Int
    let pool: DMABufferPool
    private(set) var server: (any UblkServing)?
    /// What each tag's request is, while the plugin has it.
    private var pending: [Request?]
    /// Tags whose device request waits for room in the ring, in order.
    private var waiting: [Int] = []
    /// Tags the device holds.
    private(set) var atDevice = 0
    /// Quiesced for a hand-over: nothing new goes to the device.
    private var quiesced = false
    private var added = false
    /// (NBD's connection counters stay 0.)
    var counters = BlockQueue.Counters()

    struct Request {
        var type: BlockRequestType
        var sector: UInt64
        var length: Int
    }

    init(position: Int, pool: DMABufferPool) {
        self.position = position
        self.pool = pool
        pending = Array(repeating: nil, count: pool.count)
    }

    var depth: Int { pool.count }
    var inFlight: Int { pending.count { $0 != nil } }

    /// The buffer of tag `tag`: its slot's data area, at this process's address of it.
    private func buffer(_ tag: Int, _ ctx: any BlockContext) -> UInt64 {
        UInt64(UInt(bitPattern: ctx.region.pointer(pool.slice(tag))))
    }

    /// Serve the kernel's queue from now on: a FETCH for every tag.
    func attach(_ server: any UblkServing, _ ctx: any BlockContext) throws {
        precondition(server.depth <= pool.count)
        self.server = server
        for tag in 0..<server.depth { try server.fetch(tag: tag, buffer: buffer(tag, ctx)) }
        try server.submit()
    }

    // MARK: requests from the kernel

    /// Take what the kernel handed over, send it to the device.
    func reap(_ ctx: any BlockContext) throws {
        guard let server, !quiesced else { return }
        _ = try? server.completions.consume()
        while let (tag, result) = server.nextCompletion() {
            switch result {
            case UblkABI.resultOK: try accept(tag, server, ctx)
            case UblkABI.resultAbort:
                // The disk stops, or this process is going: nothing more comes on this tag.
                PluginLog.info("block \(ctx.address) ublk queue \(position): the kernel aborted tag \(tag)'s command")
            default:
                PluginLog.warning("block \(ctx.address) ublk queue \(position): command for tag \(tag) failed: "
                                  + "\(Errno(rawValue: -result))")
            }
        }
        submitWaiting(ctx)
        try server.submit()
        publish(ctx)
    }

    /// Check the request on `tag` (the kernel's, bounded all the same) and
    /// queue it for the device, or answer it at once.
    private func accept(_ tag: Int, _ server: any UblkServing, _ ctx: any BlockContext) throws {
        guard tag >= 0, tag < server.depth, pending[tag] == nil else {
            PluginLog.warning("block \(ctx.address) ublk queue \(position): a request on tag \(tag), which is not free; ignored")
            return
        }
        counters.requests &+= 1
        let d = server.descriptor(tag)
        let limits = ctx.limits
        let length = Int(d.sectors) * BlockLimits.sectorSize
        func refuse(_ errno: Int32, _ why: String) throws {
            counters.refused &+= 1
            PluginLog.warning("block \(ctx.address) ublk queue \(position): \(why); answered with \(Errno(rawValue: errno))")
            try server.commit(tag: tag, result: -errno, buffer: buffer(tag, ctx))
        }
        let type: BlockRequestType
        switch d.operation {
        case UblkABI.opRead: type = .read
        case UblkABI.opWrite: type = .write
        case UblkABI.opFlush:
            // Without VIRTIO_BLK_F_FLUSH writes are durable when answered.
            guard limits.flush else { counters.flushes &+= 1; return try server.commit(tag: tag, result: 0, buffer: buffer(tag, ctx)) }
            type = .flush
        case UblkABI.opDiscard where limits.discard: type = .discard
        case UblkABI.opWriteZeroes where limits.writeZeroes: type = .writeZeroes
        default: return try refuse(EOPNOTSUPP, "operation \(d.operation) is not one the disk offers")
        }
        if limits.readOnly, type != .read, type != .flush { return try refuse(EROFS, "\(type) on a read-only disk") }
        if type != .flush {
            let end = d.startSector.addingReportingOverflow(UInt64(d.sectors))
            guard d.sectors > 0, !end.overflow, end.partialValue <= limits.capacitySectors else {
                return try refuse(EIO, "\(type) of \(d.sectors) sectors at \(d.startSector) is not within the \(limits.capacitySectors)-sector disk")
            }
            let most = switch type {
            case .discard: Int(limits.maxDiscardSectors) * BlockLimits.sectorSize
            case .writeZeroes: Int(limits.maxWriteZeroesSectors) * BlockLimits.sectorSize
            default: ctx.partBytes
            }
            guard length <= most else { return try refuse(EIO, "\(type) of \(length) bytes is larger than one device request (\(most))") }
        }
        pending[tag] = Request(type: type, sector: d.startSector, length: type == .flush ? 0 : length)
        waiting.append(tag)
    }

    /// Add what waits, as far as the ring has room (not while quiesced).
    private func submitWaiting(_ ctx: any BlockContext) {
        guard !quiesced else { return }
        let queue = ctx.queue(position)
        while let tag = waiting.first, let r = pending[tag] {
            guard BlockDeviceIO.add(r.type, sector: r.sector, length: r.length, slot: pool.slice(tag), token: UInt64(tag), ctx, to: queue) else {
                break
            }
            waiting.removeFirst()
            atDevice += 1
            added = true
        }
    }

    /// Make what was added visible; kick the device if it asks.
    private func publish(_ ctx: any BlockContext) {
        guard added else { return }
        added = false
        if BlockDeviceIO.publish(ctx, position) { counters.kicks &+= 1 }
    }

    // MARK: answers from the device

    /// Take what the device returned and answer the kernel.
    func collect(_ ctx: any BlockContext) throws {
        guard let server else { return }
        try drain(server, ctx)
        submitWaiting(ctx)
        try server.submit()
        publish(ctx)
    }

    private func drain(_ server: any UblkServing, _ ctx: any BlockContext) throws {
        while let used = try ctx.queue(position).popUsed() {
            // Tokens beyond the pool are the runtime's own requests (GET_ID at bring-up).
            guard used.token < UInt64(pool.count) else { continue }
            let tag = Int(used.token)
            guard let r = pending[tag] else {
                PluginLog.warning("block \(ctx.address) ublk queue \(position): tag \(tag) came back with no request waiting for it; ignored")
                continue
            }
            pending[tag] = nil
            atDevice -= 1
            let status = BlockDeviceIO.status(r.type, length: r.length, slot: pool.slice(tag), usedLength: used.length, ctx)
            let result: Int32
            switch status {
            case BlockStatus.ok: result = Int32(r.length)
            case BlockStatus.unsupported: result = -EOPNOTSUPP
            default: result = -EIO
            }
            count(r, ok: status == BlockStatus.ok)
            if status != BlockStatus.ok {
                PluginLog.warning("block \(ctx.address) ublk queue \(position): \(r.type) of \(r.length) bytes at sector \(r.sector) "
                                  + "failed (device status \(status))")
            }
            try server.commit(tag: tag, result: result, buffer: buffer(tag, ctx))
        }
    }

    private func count(_ r: Request, ok: Bool) {
        if !ok { counters.errors &+= 1 }
        switch r.type {
        case .read: counters.reads &+= 1; if ok { counters.readBytes &+= UInt64(r.length) }
        case .write: counters.writes &+= 1; if ok { counters.writeBytes &+= UInt64(r.length) }
        case .flush, .getID: counters.flushes &+= 1
        case .discard: counters.discards &+= 1
        case .writeZeroes: counters.writeZeroes &+= 1
        }
    }

    // MARK: hand-over

    /// Stop sending requests to the device and answer those it has (waiting
    /// up to `timeout` s for it). Requests still waiting stay unanswered:
    /// once this process is gone the kernel issues them again to the next
    /// plugin (user recovery with reissue); if the hand-over is rolled
    /// back, `resumeAfterQuiesce` sends them on.
    func quiesce(_ ctx: any BlockContext, timeout: Double = 3) throws {
        quiesced = true
        guard let server else { return }
        let deadline = monotonic() + timeout
        while atDevice > 0 {
            try drain(server, ctx)
            guard atDevice > 0 else { break }
            guard monotonic() < deadline else {
                throw PluginError("ublk queue \(position): the device still holds \(atDevice) request(s) after \(timeout) s")
            }
            usleep(200)
        }
        try server.submit()
    }

    func resumeAfterQuiesce(_ ctx: any BlockContext) throws {
        quiesced = false
        try reap(ctx)
    }

}
