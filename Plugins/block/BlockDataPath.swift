import FoundationEssentials
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime
import VirtiodProtocol

/// virtio-blk's data path (virtio 1.2 §5.2.6) behind the `nbd` endpoint:
/// request queue i serves NBD connection i (`BlockQueue`). Capacity changes
/// (config interrupt, §5.2.4) are followed here for range checks; the
/// supervisor resizes /dev/nbdN from the device's config itself.
final class BlockDataPath: DataPath {
    /// Slots per queue: requests of up to 64 × 64 KiB in flight per queue.
    static let slotsPerQueue = 64

    private(set) var connections: [UnixSocket]
    private var queues: [BlockQueue] = []
    private var shape: BlockRequestShape?
    private var limits: BlockLimits? { shape?.limits }

    init(device: AttachedDevice) throws {
        connections = try Self.connections(device)
    }

    static func connections(_ device: AttachedDevice) throws -> [UnixSocket] {
        let e = try device.endpoint("nbd")
        guard !e.fds.isEmpty else { throw PluginError("the nbd endpoint came without connections") }
        return e.fds.map(UnixSocket.init)
    }

    /// requestq0 … one per NBD connection, as many as the device has (F_MQ: num_queues, §5.2.2).
    static func plan(negotiated: UInt64, device: AttachedDevice) throws -> [(index: Int, name: String)] {
        try blockRequestQueues(negotiated: negotiated, device: device, endpointQueues: try connections(device).count)
    }

    private func context(_ driver: DeviceDriver) -> DriverBlockContext { shape!.context(driver) }

    private func setUpLimits(_ driver: DeviceDriver) throws { shape = try BlockRequestShape(driver) }

    func start(_ driver: DeviceDriver) throws {
        try setUpLimits(driver)
        for position in driver.queues.indices {
            let pool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: BlockSlot.size, count: Self.slotsPerQueue)
            queues.append(BlockQueue(position: position, connection: connections[position], pool: pool))
        }
        PluginLog.info("block \(driver.device.info.address): \(queues.count) request queue(s), \(limits!.capacityBytes) bytes"
            + (limits!.readOnly ? ", read-only" : "") + ", \(shape!.partBytes / 1024) KiB per device request")
    }

    var pollFDs: [FileDescriptor] { queues.filter(\.wantsInput).map(\.connection.fd) }

    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        guard let q = queues.first(where: { $0.connection.fd == fd }) else { return }
        try serving(q, driver) { try q.pump(context(driver)) }
    }

    /// Run `body` on queue `q`; if the kernel closed q's connection, q drops
    /// what it read from it and a fresh connection is asked for (the other
    /// queues go on; the kernel sends the dropped requests again on them).
    private func serving(_ q: BlockQueue, _ driver: DeviceDriver, _ body: () throws -> Void) throws {
        do { try body() } catch let closed as NBDConnectionClosed {
            let summary = q.connectionLost()
            q.publish(context(driver))
            if q.kernelDisconnected {
                PluginLog.info("block \(driver.device.info.address): \(closed) after its disconnect request; \(summary)")
                return
            }
            PluginLog.warning("block \(driver.device.info.address): \(closed) (it timed out a request and sends it again on another "
                              + "connection); \(summary); asking for a fresh connection")
            try driver.requestEndpoint(EndpointEvent(kind: "nbd", action: .open, key: q.position))
        }
    }

    /// The supervisor's answer to a fresh-connection request.
    func endpointEvent(_ event: EndpointEvent, fd: FileDescriptor?, _ driver: DeviceDriver) throws {
        guard event.kind == "nbd", event.key >= 0, event.key < queues.count else {
            try? fd?.close()
            return
        }
        let q = queues[event.key]
        switch event.action {
        case .opened:
            guard let fd, q.closed else {
                try? fd?.close()
                return
            }
            let fresh = UnixSocket(fd: fd)
            q.replaceConnection(fresh)
            connections[event.key] = fresh
            PluginLog.notice("block \(driver.device.info.address): NBD connection \(event.key) renewed; serving it again")
            try serving(q, driver) { try q.pump(context(driver)) }
        case .failed:
            try? fd?.close()
            PluginLog.warning("block \(driver.device.info.address): no fresh NBD connection \(event.key): "
                              + (event.facts["error"] ?? "no reason given") + "; the kernel uses the others")
        default:
            try? fd?.close()
        }
    }

    var writeFDs: [FileDescriptor] { queues.filter(\.wantsOutput).map(\.connection.fd) }

    /// Room for waiting replies: send them, and read on with the slots they freed.
    func writable(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        guard let q = queues.first(where: { $0.connection.fd == fd }) else { return }
        try serving(q, driver) {
            try q.flushOutbox(context(driver))
            try q.pump(context(driver))
        }
    }

    func interrupt(queue index: Int, _ driver: DeviceDriver) throws {
        guard index < queues.count else { return }
        let q = queues[index]
        try serving(q, driver) { try q.collect(context(driver)) }
    }

    func configChanged(_ driver: DeviceDriver) { shape?.followCapacity(driver) }

    func counters(queue position: Int) -> [String: UInt64] {
        guard position < queues.count else { return [:] }
        let q = queues[position]
        return q.counters.values(inFlight: q.inFlight).merging(
            ["connections_lost": q.counters.connectionsLost, "dropped": q.counters.dropped]) { a, _ in a }
    }

    var facts: [String: ConfigValue] {
        guard let limits else { return [:] }
        return ["capacity_bytes": .number(limits.capacityBytes), "read_only": .text(limits.readOnly ? "yes" : "no"),
                "export": .text("nbd"), "connections": .number(UInt64(connections.count)),
                "connections_closed": .number(UInt64(queues.filter(\.closed).count)),
                "request_bytes": .number(UInt64(shape?.partBytes ?? 0)), "slots_per_queue": .number(UInt64(Self.slotsPerQueue))]
    }

    // MARK: hand-over

    struct State: Codable {
        var queues: [BlockQueue.Record]
    }

    var stateVersion: Int { 1 }

    /// Nothing to finish: a request half read from a connection and a
    /// reply half sent travel in the record (the successor goes on).
    func quiesce(_ driver: DeviceDriver) throws {}

    func saveState() throws -> Data {
        try JSONEncoder().encode(State(queues: queues.map(\.record)))
    }

    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws {
        guard version == 1 else { throw PluginError("block state version \(version) is not one this plugin reads") }
        let s = try JSONDecoder().decode(State.self, from: state)
        try setUpLimits(driver)
        guard s.queues.count == driver.queues.count, s.queues.enumerated().allSatisfy({ $0.offset == $0.element.position }),
              s.queues.count <= connections.count else {
            throw PluginError("the record has \(s.queues.count) queue(s), the device \(driver.queues.count), the endpoint \(connections.count)")
        }
        let ctx = context(driver)
        queues = try s.queues.map { try BlockQueue.restore($0, connection: connections[$0.position], ctx) }
    }

    /// What the device returned and the kernel sent during the pause.
    func continueAfterHandover(_ driver: DeviceDriver) throws {
        for q in queues { try serving(q, driver) { try q.collect(context(driver)) } }
    }
}
