import FoundationEssentials
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
    let link: SupervisorLink
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
    /// The page `request` uses (allocated on first use, handed over).
    var scratch: DMASlice?
    /// Tokens of `request` chains (so a late answer is never taken for the next one's).
    var requestSerial: UInt64 = 1 << 40
    /// SIGTERM/SIGINT as events: a plugin told to stop by systemd hands over.
    let signals: SignalFD?

    init(profile: PluginProfile, device: AttachedDevice, link: SupervisorLink, privileges: String) throws {
        self.profile = profile
        self.device = device
        self.link = link
        self.privileges = privileges
        signals = try? SignalFD([SIGTERM, SIGINT])
        interrupts = Array(repeating: 0, count: device.info.vectors)
        dataPath = try profile.dataPath?(device)
    }

    public var transport: VirtioPCITransport { device.transport }

    func bringUp() throws {
        offered = transport.readDeviceFeatures()
        negotiated = try DeviceInitializer(transport: transport).run(features: profile.fullRequest(physicalDMA: device.physicalDMA)) { negotiated in
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
            config = try profile.readConfig(transport, negotiated)
        }
        // Driven live from now on: a crash leaves no record, so the device gets reset.
        device.handover.markLive()
        if let identify = profile.identify {
            do { identity = try identify(self) } catch {
                PluginLog.warning("\(profile.name) \(device.info.address): identify request failed: \(error)")
            }
        }
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
            stub: profile.stub, pluginVersion: profile.version,
            offered: .init(offered, deviceType: t), negotiated: .init(negotiated, deviceType: t),
            deviceQueues: transport.queueCount,
            queues: queues.enumerated().map { i, q in
                DriverReport.Queue(index: q.index, name: q.name, size: q.queue.size, maxSize: q.maxSize,
                                   layout: q.queue.layout.description,
                                   msixVector: q.vector == noMSIXVector ? nil : Int(q.vector),
                                   interrupts: q.vector == noMSIXVector ? intxInterrupts : interrupts[Int(q.vector)],
                                   counters: dataPath?.counters(queue: i),
                                   ringOffsets: Self.offsets(q.queue))
            },
            msixVectors: device.info.vectors,
            interruptMode: device.intx != nil ? "intx" : device.info.vectors > 0 ? "msix" : "none",
            configVector: device.info.vectors > 0 ? 0 : nil,
            configInterrupts: device.intx != nil ? intxConfigChanges : interrupts.first ?? 0,
            config: config.merging(identity) { a, _ in a }.merging(dataPath?.facts ?? [:]) { a, _ in a },
            status: transport.readStatus().names, registerAccess: transport.barsMapped ? "mmap" : "pread",
            registerErrors: transport.failedRegisterAccesses)
    }

    /// Ask the supervisor for a part of an endpoint (a console's port) or
    /// let one go; the answer comes to `DataPath.endpointEvent`.
    public func requestEndpoint(_ event: EndpointEvent) throws {
        try link.send(PluginMessage(kind: .endpoint, endpoint: event))
    }

    /// Report now (the config's data-path facts changed in a way the
    /// supervisor acts on, e.g. an endpoint is now served).
    public func reportNow() throws { try sendStatus() }

    func sendStatus(reply: Bool = false) throws {
        try link.send(PluginMessage(kind: .status, status: report(), reply: reply))
    }

    /// Serve until stop, until the supervisor hangs up, or until SIGTERM
    /// (the last two leave a hand-over record and the device running).
    func serve() throws {
        // A line a predecessor left masked (it stopped between the
        // interrupt and the unmask) would stay quiet for good: unmask once.
        if device.intx != nil { try? transport.function.unmaskINTx() }
        while true {
            let fds = [link.fd] + (signals.map { [$0.fd] } ?? []) + device.vectors.map(\.fd)
                + (device.intx.map { [$0.fd] } ?? []) + (dataPath?.pollFDs ?? [])
            let output = dataPath?.writeFDs ?? []
            let hangups = (dataPath?.hangupFDs ?? []).filter { !fds.contains($0) && !output.contains($0) }
            let events = try Poll.wait(fds.map { ($0, true, output.contains($0)) } + output.filter { !fds.contains($0) }.map { ($0, false, true) }
                                       + hangups.map { ($0, false, false) }, timeoutMS: -1)
            // An fd polled only for output that hangs up is told as writable (its write then fails).
            for event in events where event.writable || (event.closed && !fds.contains(event.fd)) {
                if let dataPath, output.contains(event.fd) { try dataPath.writable(event.fd, self) }
            }
            for event in events where event.closed && hangups.contains(event.fd) {
                try dataPath?.ready(event.fd, self)
            }
            for ready in events.filter({ $0.readable || $0.closed }).map(\.fd) where fds.contains(ready) {
                if ready == link.fd {
                    let (bytes, attached) = try link.receiveWithFD()
                    var fd = attached
                    defer { try? fd?.close() }
                    if bytes.isEmpty {
                        _ = handOver(reason: "supervisor gone")
                        PluginLog.info("\(profile.name) \(device.info.address): supervisor closed the socket; exiting, device left running")
                        return
                    }
                    let message = try PluginMessage.decode(bytes)
                    switch message.kind {
                    case .stop:
                        try? transport.reset()
                        device.handover.markLive()
                        PluginLog.info("\(profile.name) \(device.info.address): stopped, device reset")
                        return
                    case .query:
                        // A config change whose interrupt was not (yet) seen still shows.
                        try refreshConfig()
                        try sendStatus(reply: true)
                    case .endpoint:
                        guard let event = message.endpoint else { continue }
                        let handed = fd
                        fd = nil
                        if let dataPath { try dataPath.endpointEvent(event, fd: handed, self) } else { try? handed?.close() }
                    case .quiesce:
                        guard let summary = handOver(reason: "reload") else {
                            try link.send(PluginMessage(kind: .error, message: "cannot hand over: the state is not trustworthy (see the journal); keeping the device"))
                            continue
                        }
                        try link.send(PluginMessage(kind: .quiesced, message: summary))
                        guard try waitWhileQuiesced() else { return }
                        // Rolled back: the successor did not take over; continue.
                        device.handover.markLive()
                        try dataPath?.continueAfterHandover(self)
                        PluginLog.notice("\(profile.name) \(device.info.address): hand-over rolled back; continuing")
                        try sendStatus()
                    default:
                        PluginLog.warning("\(profile.name): ignoring unexpected \(message.kind) message")
                    }
                } else if let signals, ready == signals.fd {
                    let sig = (try? signals.next())??.signal ?? SIGTERM
                    _ = handOver(reason: sig == SIGINT ? "SIGINT" : "SIGTERM")
                    PluginLog.info("\(profile.name) \(device.info.address): signal \(sig); exiting, device left running")
                    return
                } else if let intx = device.intx, ready == intx.fd {
                    try? intx.consume()
                    // Reading the ISR acknowledges the device and lowers the line (§4.1.4.5).
                    let isr = transport.readInterruptStatus()
                    intxInterrupts &+= 1
                    try? transport.function.unmaskINTx()
                    if isr.contains(.configChange) {
                        intxConfigChanges &+= 1
                        try refreshConfig()
                        dataPath?.configChanged(self)
                        try sendStatus()
                    }
                    if isr.contains(.queue) {
                        for i in queues.indices { try dataPath?.interrupt(queue: i, self) }
                    }
                } else if let v = device.vectors.firstIndex(where: { $0.fd == ready }) {
                    interrupts[v] &+= (try? device.vectors[v].consume()) ?? 0
                    if v == 0 {
                        try refreshConfig()
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

    // MARK: hand-over (docs/architecture.md "Hand-over")

    /// Quiesce the data path and write the hand-over record; nil (and no
    /// record) if the state cannot be trusted, e.g. a queue the device broke.
    func handOver(reason: String) -> String? {
        if transport.readStatus().contains(.deviceNeedsReset) {
            PluginLog.warning("\(profile.name) \(device.info.address): no hand-over: the device needs a reset")
            device.handover.markLive()
            return nil
        }
        if let broken = queues.first(where: { $0.queue.isBroken }) {
            PluginLog.warning("\(profile.name) \(device.info.address): no hand-over: \(broken.name) is broken (\(broken.queue.brokenReason!))")
            device.handover.markLive()
            return nil
        }
        do {
            let started = monotonic()
            try dataPath?.quiesce(self)
            let quiesced = monotonic()
            var record = HandoverRecord(
                plugin: profile.name, pluginVersion: profile.version, address: device.info.address,
                negotiated: negotiated, allocatorCursor: device.allocator.cursor,
                queues: queues.map {
                    .init(index: $0.index, name: $0.name, maxSize: $0.maxSize, vector: $0.vector,
                          state: Data(QueueStateCodec.encode($0.queue.state)))
                },
                identity: identity, stateVersion: dataPath?.stateVersion ?? 0, data: try dataPath?.saveState(),
                reason: reason, savedAt: wallClock())
            record.scratch = scratch?.offset
            let encoded = monotonic()
            try device.handover.save(record)
            let inFlight = queues.reduce(0) { $0 + $1.queue.inFlight }
            let summary = "\(queues.count) queue(s), \(inFlight) buffer(s) in flight, state version \(record.stateVersion)"
            let now = monotonic()
            PluginLog.info("\(profile.name) \(device.info.address): hand-over record written (\(reason)): \(summary); "
                + "in \(milliseconds(now - started)) (data path quiesced in \(milliseconds(quiesced - started)), "
                + "state gathered in \(milliseconds(encoded - quiesced)), record saved in \(milliseconds(now - encoded)))")
            return summary
        } catch {
            PluginLog.warning("\(profile.name) \(device.info.address): no hand-over: \(error)")
            device.handover.markLive()
            return nil
        }
    }

    /// Quiesced: touch nothing until the supervisor says `exit` (false: the
    /// successor runs) or `resume` (true: roll back). A hang-up or SIGTERM
    /// also ends it, leaving the record for whoever comes next.
    func waitWhileQuiesced() throws -> Bool {
        let fds = [link.fd] + (signals.map { [$0.fd] } ?? [])
        while true {
            for ready in try Poll.readable(fds, timeoutMS: -1) {
                if ready != link.fd { return false }
                let bytes = try link.receive()
                guard !bytes.isEmpty, let message = try? PluginMessage.decode(bytes) else { return false }
                switch message.kind {
                case .exit, .stop: return false
                case .resume: return true
                case .query: try sendStatus(reply: true)
                default: break
                }
            }
        }
    }

    /// Continue a device another process drove, from its hand-over record:
    /// no reset, no feature negotiation, queues restored where they stood.
    /// Every field is checked against the device and this plugin first; on
    /// any mismatch it throws before touching the device.
    /// `timing`: when a standby successor was told to resume and when it had
    /// read the record (monotonic seconds), for the log line.
    func adopt(_ r: HandoverRecord, timing: (resumed: Double, recordRead: Double)? = nil) throws {
        let name = "\(profile.name) \(device.info.address)"
        guard r.plugin == profile.name, r.address == device.info.address else {
            throw PluginError("hand-over record is for \(r.plugin) on \(r.address), not \(name)")
        }
        let request = profile.fullRequest(physicalDMA: device.physicalDMA)
        let known = request.required | request.wanted
        guard r.negotiated & ~known == 0 else {
            throw PluginError("the device runs with features this plugin does not know: "
                + featureNames(r.negotiated & ~known, deviceType: profile.deviceType).joined(separator: " "))
        }
        let status = transport.readStatus()
        guard status.contains(.driverOK), !status.contains(.failed), !status.contains(.deviceNeedsReset) else {
            throw PluginError("device status is \(status.names.joined(separator: " ")), not a running device")
        }
        guard transport.readDriverFeatures() == r.negotiated else {
            throw PluginError("the device's driver features differ from the hand-over record")
        }
        if let dataPath {
            guard r.stateVersion <= dataPath.stateVersion else {
                throw PluginError("data path state version \(r.stateVersion) is newer than this plugin reads (\(dataPath.stateVersion))")
            }
            guard r.data != nil else { throw PluginError("the hand-over record carries no data path state") }
        }
        var restored: [(queue: Virtqueue, name: String, maxSize: Int, vector: UInt16, index: Int)] = []
        for q in r.queues {
            let queue = try Virtqueue(restoring: try QueueStateCodec.decode(q.state), region: device.region)
            guard q.vector == device.vector(forQueue: q.index) else {
                throw PluginError("\(q.name): vector \(q.vector) in the record, \(device.vector(forQueue: q.index)) here")
            }
            try transport.adoptQueue(q.index, size: queue.size, addresses: queue.addresses, msixVector: q.vector)
            restored.append((queue, q.name, q.maxSize, q.vector, q.index))
        }
        let queuesRestored = monotonic()
        guard r.allocatorCursor >= 0, r.allocatorCursor <= device.info.dmaSize else {
            throw PluginError("allocator cursor \(r.allocatorCursor) outside the DMA region")
        }
        offered = transport.readDeviceFeatures()
        negotiated = r.negotiated
        queues = restored
        identity = r.identity
        device.allocator = DMAAllocator(regionSize: device.info.dmaSize, segmentSize: device.region.segmentSize, start: r.allocatorCursor)
        if let page = r.scratch {
            let slice = DMASlice(offset: page, length: Self.scratchSize)
            try claimRestoredArea(slice, "the request scratch page", oneDeviceRange: true)
            scratch = slice
        }
        if let dataPath, let data = r.data { try dataPath.resume(self, state: data, version: r.stateVersion) }
        let stateRestored = monotonic()
        config = (try? profile.readConfig(transport, negotiated)) ?? [:]
        device.handover.markLive()
        try dataPath?.continueAfterHandover(self)
        var took = ""
        if let timing {
            let now = monotonic()
            took = "; resumed in \(milliseconds(now - timing.resumed)) (record read in \(milliseconds(timing.recordRead - timing.resumed)), "
                + "queues in \(milliseconds(queuesRestored - timing.recordRead)), "
                + "data path state in \(milliseconds(stateRestored - queuesRestored)), "
                + "catch-up in \(milliseconds(now - stateRestored)))"
        }
        PluginLog.info("\(name): took over from \(r.plugin) \(r.pluginVersion) (\(r.reason)) without a device reset: "
            + "\(queues.count) queue(s), running as \(privileges)\(took)")
        try sendStatus()
    }

    /// DMA memory a hand-over record says is in use: the rings, the scratch
    /// page, and what the data path restored so far.
    private(set) var restoredAreas: [DMASlice] = []

    /// Accept an area named by a hand-over record (shared memory, so not
    /// trusted): it must lie in the allocated part of the region and share
    /// no byte with any ring or area accepted before.
    /// `oneDeviceRange`: the device sees the area as one address range (a
    /// single buffer), so it must not cross a hugepage of physically
    /// addressed memory; pools check their own layout instead.
    public func claimRestoredArea(_ area: DMASlice, _ what: String, oneDeviceRange: Bool = false) throws {
        let rings = queues.map { $0.queue.memory.area }
        guard area.offset >= 0, area.length > 0, let end = area.end, end <= device.allocator.cursor,
              !(rings + restoredAreas).contains(where: { $0.overlaps(area) }) else {
            throw PluginError("\(what) in the hand-over record (\(area)) overlaps other DMA memory or lies outside the allocated part")
        }
        guard !oneDeviceRange || device.region.addressMap.isContiguous(offset: area.offset, length: area.length) else {
            throw PluginError("\(what) in the hand-over record (\(area)) crosses a hugepage of the DMA memory")
        }
        restoredAreas.append(area)
    }

    /// Where a queue's parts lie in the DMA memory (offsets, whatever the
    /// device addresses are).
    static func offsets(_ q: Virtqueue) -> [String: Int] {
        let at = q.memory.area.offset, g = q.geometry
        return ["descriptors": at + g.descriptorsOffset, "driver": at + g.driverAreaOffset, "device": at + g.deviceAreaOffset]
    }

    /// Re-read the device config (after a config interrupt or for a report).
    /// A device that set DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2, e.g. QEMU
    /// after it saw the driver break the ring rules) ends this process: the
    /// supervisor then resets the device and starts a fresh plugin.
    private func refreshConfig() throws {
        if transport.readStatus().contains(.deviceNeedsReset) {
            throw PluginError("the device set DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2): it hit an error it cannot recover from and needs a reset")
        }
        do {
            config = try profile.readConfig(transport, negotiated)
        } catch {
            PluginLog.warning("\(profile.name) \(device.info.address): config read failed: \(error)")
        }
    }
}
