import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime
import VirtiodProtocol

/// The share's data path: requests from /dev/fuse (the `fuse` endpoint: the
/// supervisor opened it, had it mounted and keeps it) served over the 9P
/// session on the device's request queue.
///
/// Start: Tversion (msize) and Tattach (fid 0 = the share's root) — only
/// on a device just reset: Tversion on a live session would clunk every fid.
/// Reload: the successor takes the fid, node and handle tables and the slots
/// from the record and reads on from /dev/fuse; nothing is pending then
/// (quiesce answers every FUSE request it read first). After a reset of the
/// device (a plugin that crashed) the fids are gone: the kernel's nodes but
/// the root answer ESTALE, and it looks them up again.
final class NinePDataPath: DataPath {
    /// Most 9P requests waiting for a slot before reading from /dev/fuse pauses.
    static let backlog = 64
    static let handshakeTimeout = 10.0

    private let fuse: FUSEDevice
    private let mountPoint: String
    private let readOnly: Bool
    /// The kernel's INIT was answered by an earlier plugin (this one starts after a crash).
    private let sessionLive: Bool
    private var session: NinePSession?
    private var server: ShareServer?
    private var reading = true
    /// /dev/fuse says the filesystem is gone (unmounted): nothing more to read.
    private var unmounted = false
    /// Where a request is read when no slot is free for its tail.
    private var buffer: [UInt8]
    /// A request's first bytes when its tail goes into a slot: a WRITE's head.
    private var head = [UInt8](repeating: 0, count: FUSEWire.Request.writeHeadSize)
    private var writeErrors: UInt64 = 0

    init(device: AttachedDevice) throws {
        let e = try device.endpoint("fuse")
        guard let fd = e.fds.first else { throw PluginError("the fuse endpoint came without /dev/fuse") }
        fuse = FUSEDevice(fd)
        mountPoint = e.facts["mount_point"] ?? "?"
        readOnly = e.facts["read_only"] == "yes"
        sessionLive = e.facts["session"] == "live"
        buffer = [UInt8](repeating: 0, count: Int(NinePSession.preferredMsize) + 64 * 1024)
        // Read only what is there (the flag is the open file's: the supervisor never reads it).
        fuse.setNonBlocking()
    }

    private func makeSession(_ driver: DeviceDriver, pool: DMABufferPool) -> NinePSession {
        let index = driver.queues[0].index
        return NinePSession(region: driver.device.region, queue: driver.queues[0].queue, pool: pool,
                            indirect: TransportFeatures(rawValue: driver.negotiated).contains(.indirectDescriptors),
                            notify: { driver.transport.notify(index) })
    }

    private func makeServer(_ driver: DeviceDriver, _ session: NinePSession, tables: ShareTables, initialized: Bool) -> ShareServer {
        ShareServer(channel: session, tables: tables, address: driver.device.info.address, readOnly: readOnly,
                    initialized: initialized) { [weak self] bytes in self?.send(bytes) }
    }

    func start(_ driver: DeviceDriver) throws {
        guard !driver.queues.isEmpty else { throw PluginError("the device has no request queue") }
        let pool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: NinePSession.slotSize, count: NinePSession.slots)
        let s = makeSession(driver, pool: pool)
        session = s
        let address = driver.device.info.address
        var v = try handshake(s, .version(msize: NinePSession.preferredMsize), address)
        let msize = try v.u32()
        let version = String(decoding: try v.string(), as: UTF8.self)
        guard version == NinePWire.version else { throw PluginError("the 9P server speaks \(version), not \(NinePWire.version)") }
        try s.negotiated(msize: msize)
        var a = try handshake(s, .attach(fid: ShareTables.rootFid, uname: "root", aname: "", uid: 0), address)
        let root = try a.qid()
        server = makeServer(driver, s, tables: ShareTables(rootQid: root.path, idBase: ShareTables.freshIDBase(now: wallClock())),
                            initialized: sessionLive)
        PluginLog.info("9p \(address): 9P2000.L session up (msize \(msize)); serving \(mountPoint)"
                       + (readOnly ? " read-only" : "")
                       + (sessionLive ? " (a live FUSE session: nodes the kernel knew answer ESTALE until looked up again)" : ""))
    }

    /// A request answered before the event loop runs (Tversion, Tattach).
    private func handshake(_ s: NinePSession, _ request: NinePWire.Request, _ address: String) throws -> NinePWire.Reader {
        var result: Result<NinePWire.Reader, NinePError>?
        s.send(request) { result = $0 }
        s.publish()
        let deadline = monotonic() + Self.handshakeTimeout
        while result == nil {
            guard monotonic() < deadline else { throw PluginError("no answer to \(request.replyType) within \(Int(Self.handshakeTimeout)) s") }
            try s.collect(address)
            if result == nil { usleep(500) }
        }
        switch result! {
        case .success(let r): return r
        case .failure(let e): throw PluginError("\(request.replyType): \(e)")
        }
    }

    // MARK: /dev/fuse

    private func send(_ r: FUSEWire.Reply) {
        let refused = switch r.body {
        case .array(let b): fuse.reply(r.header, b)
        case .dma(let slice): session.map { fuse.reply(r.header, dma: ($0.region, slice)) } ?? .ioError
        }
        // ENOENT: the kernel gave up on the request (interrupted); nothing to do.
        if let e = refused, e != .noSuchFileOrDirectory {
            writeErrors &+= 1
            if writeErrors < 10 { PluginLog.warning("9p: answer to /dev/fuse not taken: \(e)") }
        }
    }

    var pollFDs: [FileDescriptor] {
        guard reading, !unmounted, let session, session.inFlight < NinePSession.slots + Self.backlog else { return [] }
        return [fuse.fd]
    }

    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        guard fd == fuse.fd, let server, let session else { return }
        defer { session.unreserve() }
        reading: for _ in 0..<64 {
            // With a slot free, the request's head goes to `head` and the
            // rest into the slot: a WRITE's data is then where Twrite needs it.
            let slot = session.reserve()
            let n: Int
            switch try slot.map({ try fuse.read(into: &head, then: driver.device.region, $0.area) }) ?? fuse.read(into: &buffer) {
            case .request(let count): n = count
            case .nothing: break reading
            case .unmounted:
                unmounted = true
                PluginLog.notice("9p \(driver.device.info.address): \(mountPoint) was unmounted")
                try driver.reportNow()
                break reading
            }
            var request: FUSEWire.Request?
            var placed: NinePPayload?
            if let slot, n > head.count {
                let spilled = n - head.count
                if FUSEWire.Request.writeSize(head) == spilled {
                    request = FUSEWire.Request(head, count: head.count, elsewhere: spilled)
                    placed = .placed(slot: slot.slot, count: spilled)
                } else {
                    request = FUSEWire.Request(head + session.reservedBytes(spilled), count: n)
                }
            } else {
                request = slot == nil ? FUSEWire.Request(buffer, count: n) : FUSEWire.Request(head, count: n)
            }
            guard let request else {
                PluginLog.warning("9p \(driver.device.info.address): a FUSE request of \(n) bytes that does not parse; ignored")
                continue
            }
            let wasInitialized = server.initialized
            server.handle(request, writeData: placed)
            if !wasInitialized, server.initialized { try driver.reportNow() }
        }
        session.publish()
    }

    func interrupt(queue index: Int, _ driver: DeviceDriver) throws {
        guard let session else { return }
        try session.collect(driver.device.info.address)
        session.publish()
    }

    func configChanged(_ driver: DeviceDriver) {}

    func counters(queue index: Int) -> [String: UInt64] {
        guard let session, let server else { return [:] }
        let s = session.counters, f = server.counters
        return ["requests": s.requests, "errors": s.errors, "malformed": s.malformed, "flushes": s.flushes, "kicks": s.kicks,
                "read_bytes": s.readBytes, "write_bytes": s.writeBytes, "in_flight": UInt64(session.inFlight),
                "fuse_requests": f.requests, "fuse_errors": f.errors, "fuse_unsupported": f.unsupported,
                "fuse_interrupts": f.interrupts, "fuse_stale": f.stale, "fuse_reads": f.reads, "fuse_writes": f.writes,
                "fuse_write_errors": writeErrors]
    }

    var facts: [String: ConfigValue] {
        guard let session, let server else { return [:] }
        return ["mount_point": .text(mountPoint), "read_only": .text(readOnly ? "yes" : "no"),
                "fuse": .text(unmounted ? "unmounted" : server.initialized ? "serving" : "waiting"),
                "msize": .number(UInt64(session.msize)), "nodes": .number(UInt64(server.tables.nodes.count)),
                "open_files": .number(UInt64(server.tables.handles.count))]
    }

    // MARK: hand-over

    struct State: Codable {
        var pool: PoolPlacement
        var msize: UInt32
        var tables: ShareTables
        var initialized: Bool
        var unmounted: Bool
        var session: NinePSession.Counters
        var server: ShareServer.Counters
    }

    var stateVersion: Int { 1 }

    /// Stop reading /dev/fuse and answer what was read: every 9P request
    /// finishes (bounded); what the kernel has not handed out yet waits in
    /// its queue for the successor.
    func quiesce(_ driver: DeviceDriver) throws {
        guard let session, let server else { return }
        reading = false
        let deadline = monotonic() + 3
        while !(session.idle && server.busy == 0) {
            guard monotonic() < deadline else {
                reading = true
                throw PluginError("\(session.inFlight) 9P request(s) unanswered after 3 s")
            }
            try session.collect(driver.device.info.address)
            session.publish()
            if !session.idle { usleep(200) }
        }
    }

    func saveState() throws -> Data {
        guard let session, let server else { throw PluginError("no 9P session to hand over") }
        return try JSONEncoder().encode(State(pool: PoolPlacement(session.pool), msize: session.msize, tables: server.tables,
                                              initialized: server.initialized, unmounted: unmounted,
                                              session: session.counters, server: server.counters))
    }

    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws {
        guard version == 1 else { throw PluginError("9p state version \(version) is not one this plugin reads") }
        let s = try JSONDecoder().decode(State.self, from: state)
        guard s.pool.bufferSize == NinePSession.slotSize, !driver.queues.isEmpty else { throw PluginError("the record's 9P slots are not this plugin's") }
        let pool = try driver.restoredPool(s.pool, queue: 0, "9p requests")
        guard pool.freeCount == pool.count else { throw PluginError("the record has 9P requests in flight") }
        let session = makeSession(driver, pool: pool)
        try session.negotiated(msize: s.msize)
        session.counters = s.session
        let server = makeServer(driver, session, tables: s.tables, initialized: s.initialized)
        server.counters = s.server
        self.session = session
        self.server = server
        unmounted = s.unmounted
    }

    func continueAfterHandover(_ driver: DeviceDriver) throws {
        reading = true
        if let session {
            try session.collect(driver.device.info.address)
            session.publish()
        }
    }
}
