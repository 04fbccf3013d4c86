import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// A driver that initialises the device with the profile's features and
/// queues, keeps it in DRIVER_OK, counts its interrupts, re-reads its config
/// on config-change interrupts, and reports it. The stub plugins are this;
/// real plugins add a `DataPath` on the same queues and event loop.
public final class DeviceDriver {
    let profile: PluginProfile
    public let device: AttachedDevice
    let socket: UnixSocket
    let privileges: String
    private(set) var offered: UInt64 = 0
    public private(set) var negotiated: UInt64 = 0
    let dataPath: (any DataPath)?
    /// The queues set up, in plan order; `index` is the device's queue index.
    public internal(set) var queues: [(queue: Virtqueue, name: String, maxSize: Int, vector: UInt16, index: Int)] = []
    var interrupts: [UInt64]
    /// What identify requests learned (reported with the config).
    var identity: [String: ConfigValue] = [:]
    private var intxInterrupts: UInt64 = 0
    private var intxConfigChanges: UInt64 = 0
    public private(set) var config: [String: ConfigValue] = [:]

    init(profile: PluginProfile, device: AttachedDevice, socket: UnixSocket, privileges: String) throws {
        self.profile = profile
        self.device = device
        self.socket = socket
        self.privileges = privileges
        interrupts = Array(repeating: 0, count: device.info.vectors)
        dataPath = try profile.dataPath?(device)
    }

    public var transport: VirtioPCITransport { device.transport }

    func bringUp() throws {
        offered = transport.readDeviceFeatures()
        negotiated = try DeviceInitializer(transport: transport).run(features: profile.fullRequest) { negotiated in
            let layout: RingLayout = negotiated & TransportFeatures.ringPacked.rawValue != 0 ? .packed : .split
            let base = QueueOptions(negotiated: negotiated)
            let plan = try profile.queuePlan?(negotiated, device)
                ?? profile.queues.prefix(transport.queueCount).enumerated().map { ($0, $1) }
            for (index, name) in plan {
                let maximum = try transport.maxQueueSize(index)
                guard maximum > 0 else { throw PluginError("device offers no queue \(index) (\(name))") }
                // Split rings need a power of two; take the largest one within both limits.
                var size = 1
                while size * 2 <= min(maximum, profile.maxQueueSize) { size *= 2 }
                var options = base
                options.tolerateOversizedLength = profile.droppableQueues.contains(name)
                let queue = try Virtqueue(layout: layout, size: size, region: device.region,
                                          allocator: &device.allocator, options: options)
                let vector = device.vector(forQueue: index)
                try transport.setUpQueue(index, size: size, addresses: queue.addresses, msixVector: vector)
                queues.append((queue, name, maximum, vector, index))
            }
            if device.info.vectors > 0 { try transport.setConfigVector(0) }
            config = try DeviceConfigReader.read(transport, negotiated: negotiated)
        }
        if let probe = profile.identify { identify(probe) }
        try dataPath?.start(self)
        PluginLog.info("\(profile.name) \(device.info.address): DRIVER_OK, features "
            + featureNames(negotiated, deviceType: profile.deviceType).joined(separator: " ")
            + ", \(queues.count) queue(s), " + (device.intx != nil ? "INTx" : "\(device.info.vectors) MSI-X vector(s)")
            + ", running as \(privileges)")
        try sendStatus()
    }

    func report() -> DriverReport {
        let t = profile.deviceType
        return DriverReport(
            stub: profile.stub, pluginVersion: PluginMain.version,
            offered: .init(offered, deviceType: t), negotiated: .init(negotiated, deviceType: t),
            deviceQueues: transport.queueCount,
            queues: queues.enumerated().map { i, q in
                DriverReport.Queue(index: q.index, name: q.name, size: q.queue.size, maxSize: q.maxSize,
                                   layout: q.queue.layout.description,
                                   msixVector: q.vector == noMSIXVector ? nil : Int(q.vector),
                                   interrupts: q.vector == noMSIXVector ? intxInterrupts : interrupts[Int(q.vector)],
                                   counters: dataPath?.counters(queue: i))
            },
            msixVectors: device.info.vectors,
            interruptMode: device.intx != nil ? "intx" : device.info.vectors > 0 ? "msix" : "none",
            configVector: device.info.vectors > 0 ? 0 : nil,
            configInterrupts: device.intx != nil ? intxConfigChanges : interrupts.first ?? 0,
            config: config.merging(identity) { a, _ in a }.merging(dataPath?.facts ?? [:]) { a, _ in a },
            status: transport.readStatus().names, registerAccess: transport.barsMapped ? "mmap" : "pread")
    }

    func sendStatus(reply: Bool = false) throws {
        try socket.send(PluginMessage(kind: .status, status: report(), reply: reply).encoded())
    }

    /// Serve until stop or until the supervisor hangs up.
    func serve() throws {
        let fds = [socket.fd] + device.vectors.map(\.fd) + (device.intx.map { [$0.fd] } ?? []) + (dataPath?.pollFDs ?? [])
        while true {
            for ready in try Poll.readable(fds, timeoutMS: -1) {
                if ready == socket.fd {
                    let (bytes, extra) = try socket.receive()
                    for f in extra { try? f.close() }
                    if bytes.isEmpty {
                        PluginLog.info("\(profile.name) \(device.info.address): supervisor closed the socket; exiting")
                        return
                    }
                    let message = try PluginMessage.decode(bytes)
                    switch message.kind {
                    case .stop:
                        try? transport.reset()
                        PluginLog.info("\(profile.name) \(device.info.address): stopped, device reset")
                        return
                    case .query:
                        // A config change whose interrupt was not (yet) seen still shows.
                        refreshConfig()
                        try sendStatus(reply: true)
                    default:
                        PluginLog.warning("\(profile.name): ignoring unexpected \(message.kind) message")
                    }
                } else if let intx = device.intx, ready == intx.fd {
                    _ = try? intx.consume()
                    // Reading the ISR acknowledges the device and lowers the line (§4.1.4.5).
                    let isr = transport.readInterruptStatus()
                    intxInterrupts &+= 1
                    try? transport.vfio.unmaskINTx()
                    if isr.contains(.configChange) {
                        intxConfigChanges &+= 1
                        refreshConfig()
                        dataPath?.configChanged(self)
                        try sendStatus()
                    }
                    if isr.contains(.queue) {
                        for i in queues.indices { try dataPath?.interrupt(queue: i, self) }
                    }
                } else if let v = device.vectors.firstIndex(where: { $0.fd == ready }) {
                    interrupts[v] &+= (try? device.vectors[v].consume()) ?? 0
                    if v == 0 {
                        refreshConfig()
                        dataPath?.configChanged(self)
                        try sendStatus()
                    }
                    for (i, q) in queues.enumerated() where Int(q.vector) == v {
                        try dataPath?.interrupt(queue: i, self)
                    }
                } else if let dataPath, dataPath.pollFDs.contains(ready) {
                    try dataPath.ready(ready, self)
                }
            }
        }
    }

    private func refreshConfig() {
        do {
            config = try DeviceConfigReader.read(transport, negotiated: negotiated)
        } catch {
            PluginLog.warning("\(profile.name) \(device.info.address): config read failed: \(error)")
        }
    }
}
