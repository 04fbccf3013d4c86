import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime
import VirtiodProtocol

/// virtio-blk's data path (virtio 1.2 §5.2.6) behind the `ublk` endpoint:
/// request queue i serves ublk hardware queue i (`UblkQueue`, tag t in
/// slot t). The supervisor made the device; this process asks it for
/// /dev/ublkcN (`endpoint open`: it is handed over only once no other
/// process holds it, so the answer may be "ask again"), fetches on every
/// tag, and reports `ublk: serving`, on which the supervisor starts the
/// disk or ends a recovery.
final class UblkDataPath: DataPath {
    /// How long a refused open waits before asking again.
    static let retryInterval = 0.02

    private let deviceID: String
    private let endpointQueues: Int
    private let depth: Int
    private var shape: BlockRequestShape?
    private var queues: [UblkQueue] = []
    /// /dev/ublkcN, once the supervisor handed it over.
    private var server: FileDescriptor?
    private let retry: TimerFD
    private var asked = 0.0
    private var lastRefusal = 0.0

    init(device: AttachedDevice) throws {
        let e = try device.endpoint("ublk")
        guard let id = e.facts["device"], let n = e.facts["queues"].flatMap(Int.init), n > 0,
              let depth = e.facts["queue_depth"].flatMap(Int.init), depth > 0, depth <= BlockDataPath.slotsPerQueue,
              let most = e.facts["max_request_bytes"].flatMap(Int.init), most <= BlockSlot.ublkDataSize else {
            throw PluginError("the ublk endpoint came with facts this plugin cannot serve: \(e.facts)")
        }
        deviceID = id
        endpointQueues = n
        self.depth = depth
        retry = try TimerFD()
    }

    /// requestq0 … one per ublk queue, as many as the device has (F_MQ: num_queues, §5.2.2).
    static func plan(negotiated: UInt64, device: AttachedDevice) throws -> [(index: Int, name: String)] {
        try blockRequestQueues(negotiated: negotiated, device: device,
                               endpointQueues: try device.endpoint("ublk").facts["queues"].flatMap(Int.init) ?? 1)
    }

    private func context(_ driver: DeviceDriver) -> DriverBlockContext { shape!.context(driver) }

    func start(_ driver: DeviceDriver) throws {
        shape = try BlockRequestShape(driver, slotData: BlockSlot.ublkDataSize)
        guard driver.queues.count == endpointQueues else {
            throw PluginError("the device has \(driver.queues.count) request queue(s), ublk device \(deviceID) \(endpointQueues)")
        }
        for position in driver.queues.indices {
            let pool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: BlockSlot.size(data: BlockSlot.ublkDataSize), count: depth)
            queues.append(UblkQueue(position: position, pool: pool))
        }
        PluginLog.info("block \(driver.device.info.address): \(queues.count) request queue(s), \(shape!.limits.capacityBytes) bytes"
            + (shape!.limits.readOnly ? ", read-only" : "") + ", served through ublk device \(deviceID)")
        try askForServer(driver)
    }

    // MARK: /dev/ublkcN

    private func askForServer(_ driver: DeviceDriver) throws {
        asked = monotonic()
        try driver.requestEndpoint(EndpointEvent(kind: "ublk", action: .open, key: 0))
    }

    func endpointEvent(_ event: EndpointEvent, fd: FileDescriptor?, _ driver: DeviceDriver) throws {
        guard event.kind == "ublk", event.key == 0 else {
            try? fd?.close()
            return
        }
        switch event.action {
        case .opened:
            guard let fd, server == nil else {
                try? fd?.close()
                return
            }
            server = fd
            try serve(driver)
        case .failed where event.facts["retry"] == "yes":
            let now = monotonic()
            if now - lastRefusal > 5 {
                lastRefusal = now
                PluginLog.info("block \(driver.device.info.address): ublk device \(deviceID) not ours yet ("
                               + (event.facts["error"] ?? "no reason given") + "); asking again")
            }
            try retry.arm(after: Self.retryInterval)
        default:
            try? fd?.close()
            throw PluginError("the supervisor gives no ublk device: " + (event.facts["error"] ?? "no reason given"))
        }
    }

    /// /dev/ublkcN is ours: fetch on every tag of every queue, then report
    /// (the supervisor starts the disk, or ends the recovery).
    private func serve(_ driver: DeviceDriver) throws {
        guard let server else { return }
        let ctx = context(driver)
        for q in queues { try q.attach(UblkServerQueue(server: server, queue: q.position, depth: depth), ctx) }
        PluginLog.info("block \(driver.device.info.address): serving ublk device \(deviceID) "
                       + "(\(milliseconds(monotonic() - asked)) after asking for it)")
        try driver.reportNow()
    }

    // MARK: the event loop

    var pollFDs: [FileDescriptor] { [retry.fd] + queues.compactMap { $0.server?.completions.fd } }

    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        if fd == retry.fd {
            _ = retry.consume()
            if server == nil { try askForServer(driver) }
            return
        }
        guard let q = queues.first(where: { $0.server?.completions.fd == fd }) else { return }
        try q.reap(context(driver))
    }

    func interrupt(queue index: Int, _ driver: DeviceDriver) throws {
        guard index < queues.count else { return }
        try queues[index].collect(context(driver))
    }

    func configChanged(_ driver: DeviceDriver) { shape?.followCapacity(driver) }

    func counters(queue position: Int) -> [String: UInt64] {
        guard position < queues.count else { return [:] }
        return queues[position].counters.values(inFlight: queues[position].inFlight)
    }

    var facts: [String: ConfigValue] {
        guard let shape else { return [:] }
        return ["capacity_bytes": .number(shape.limits.capacityBytes), "read_only": .text(shape.limits.readOnly ? "yes" : "no"),
                "export": .text("ublk"), "ublk_device": .text(deviceID),
                "ublk": .text(server != nil && queues.allSatisfy { $0.server != nil } ? "serving" : "waiting"),
                "ublk_server_pid": .number(UInt64(getpid())),
                "request_bytes": .number(UInt64(shape.partBytes)), "slots_per_queue": .number(UInt64(depth))]
    }

    // MARK: hand-over

    struct State: Codable {
        var pools: [PoolPlacement]
        var counters: [BlockQueue.Counters]
    }

    var stateVersion: Int { 1 }

    /// Answer what the device holds; what the kernel handed over and the
    /// device never got is issued again to the successor by the kernel
    /// once this process is gone.
    func quiesce(_ driver: DeviceDriver) throws {
        let ctx = context(driver)
        for q in queues { try q.quiesce(ctx) }
    }

    func saveState() throws -> Data {
        try JSONEncoder().encode(State(pools: queues.map { PoolPlacement($0.pool) }, counters: queues.map(\.counters)))
    }

    /// The predecessor's slots are its tags' buffers until it is gone (the
    /// kernel may still copy into them): this process takes the same
    /// slots and asks for /dev/ublkcN, which it gets once the predecessor
    /// ended.
    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws {
        guard version == 1 else { throw PluginError("ublk block state version \(version) is not one this plugin reads") }
        let s = try JSONDecoder().decode(State.self, from: state)
        shape = try BlockRequestShape(driver, slotData: BlockSlot.ublkDataSize)
        guard s.pools.count == driver.queues.count, s.counters.count == s.pools.count, s.pools.count == endpointQueues else {
            throw PluginError("the record has \(s.pools.count) queue(s), the device \(driver.queues.count), ublk device \(deviceID) \(endpointQueues)")
        }
        var restored: [UblkQueue] = []
        for (position, placement) in s.pools.enumerated() {
            guard placement.bufferSize == BlockSlot.size(data: BlockSlot.ublkDataSize) else { throw PluginError("queue \(position): the record's slots are not this plugin's") }
            let pool = try driver.restoredPool(placement, queue: position, "ublk queue \(position)")
            guard pool.count >= depth, pool.freeCount == pool.count else {
                throw PluginError("queue \(position): the record's pool has \(pool.count) slot(s), \(pool.count - pool.freeCount) of them at the device")
            }
            let q = UblkQueue(position: position, pool: pool)
            q.counters = s.counters[position]
            restored.append(q)
        }
        queues = restored
    }

    func continueAfterHandover(_ driver: DeviceDriver) throws {
        if server == nil {
            if asked == 0 { try askForServer(driver) }
            return
        }
        // Rolled back: send on what waited.
        for q in queues { try q.resumeAfterQuiesce(context(driver)) }
    }
}
