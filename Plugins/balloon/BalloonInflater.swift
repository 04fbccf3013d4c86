import FoundationEssentials
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime
import VirtiodProtocol

/// Inflating and deflating (virtio 1.2 §5.5.6.1, §5.5.6.2) with pages the
/// supervisor really holds for this device (its `balloon` endpoint: a chunk
/// of `chunk_pages` pinned pages per request, answered with their
/// guest-physical frame numbers). One chunk moves at a time:
///
///   inflate: ask the supervisor for chunk k → its frame numbers into the
///            inflateq buffer → the device used it → k held, `actual` += a chunk
///   deflate: chunk k's frame numbers into the deflateq buffer → the device
///            used it → the supervisor gives k back, `actual` −= a chunk
///
/// so `actual` (written to the config, §5.5.4) counts only pages held and
/// told to the host. The frame numbers are what the supervisor read from
/// pagemap — never device (IOVA) addresses: the device discards the guest
/// page each number names.
final class BalloonInflater {
    /// Largest chunk taken from the endpoint (16 MiB: a 16 KiB buffer).
    static let maxChunkPages = 4096
    /// Seconds between low-memory checks while pages are held.
    static let checkInterval = 0.25

    enum Pending: Codable, Equatable {
        /// Chunk asked of the supervisor, no answer yet.
        case requesting(Int)
        /// A held chunk's frames asked again (to deflate it after a hand-over).
        case fetching(Int)
        /// The chunk's frames are with the device on inflateq / deflateq.
        case inflating(Int, [UInt32])
        case deflating(Int)
    }

    let inflatePosition: Int, deflatePosition: Int
    let chunks: Int
    /// Frame numbers per chunk (the endpoint's `chunk_pages`) and the buffer that carries them.
    let framesPerChunk: Int
    var bufferSize: Int { framesPerChunk * 4 }
    var chunkMiB: Int { framesPerChunk >> 8 }
    let deflateOnOOM: Bool
    let timer: TimerFD
    /// The supervisor's PSI trigger, watched for its events.
    let pressure: PressureWatch?
    var inflatePool: DMABufferPool?, deflatePool: DMABufferPool?
    /// Held chunks and their frame numbers; [] when not known here (a
    /// predecessor's chunk: the record carries chunk numbers only — the
    /// frames of a whole guest would not fit in it — and the supervisor
    /// says them again when the chunk is to be deflated).
    var held: [Int: [UInt32]] = [:]
    var pending: Pending?
    var policy: BalloonPolicy
    /// Seconds without inflating after a pressure deflate.
    let holdOff: Double
    var targetPages: UInt32 = 0
    /// Why the target is not met (nil: it is, or getting there).
    var shortfall: String?
    var inflated: UInt64 = 0, deflated: UInt64 = 0, pressureDeflates: UInt64 = 0, refusals: UInt64 = 0
    var timerArmed = false

    init(inflate: Int, deflate: Int, endpoint: AttachedEndpoint, deflateOnOOM: Bool, holdOff: Double) throws {
        self.holdOff = holdOff
        inflatePosition = inflate
        deflatePosition = deflate
        guard let n = endpoint.facts["chunks"].flatMap(Int.init), n > 0,
              let pages = endpoint.facts["chunk_pages"].flatMap(Int.init), pages >= 256, pages <= Self.maxChunkPages,
              pages % 256 == 0 else {
            throw PluginError("the balloon endpoint's facts do not fit this plugin: \(endpoint.facts)")
        }
        chunks = n
        framesPerChunk = pages
        policy = BalloonPolicy(chunkPages: pages)
        self.deflateOnOOM = deflateOnOOM
        pressure = try endpoint.fds.first.map { try PressureWatch(trigger: $0) }
        timer = try TimerFD()
    }

    var pollFDs: [FileDescriptor] { [timer.fd] + (pressure.map { [$0.fd] } ?? []) }

    func start(_ driver: DeviceDriver) throws {
        inflatePool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: bufferSize, count: 1)
        deflatePool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: bufferSize, count: 1)
        try writeActual(driver)
        configChanged(driver)
    }

    /// num_pages (config le32 at 0) may have changed.
    func configChanged(_ driver: DeviceDriver) {
        do {
            targetPages = try driver.transport.readConfig(UInt32.self, at: 0)
            try step(driver)
        } catch { PluginLog.warning("balloon: following the target: \(error)") }
    }

    // MARK: the next move

    func step(_ driver: DeviceDriver) throws {
        guard pending == nil else { return }
        let mem = MemInfo.read()
        let total = mem?["MemTotal"] ?? 0, available = mem?["MemAvailable"] ?? 0
        switch policy.next(targetPages: targetPages, held: held.count, available: available, total: total, now: monotonic()) {
        case .inflate:
            guard let k = (0..<chunks).first(where: { held[$0] == nil }) else {
                shortfall = "every chunk of the guest's memory is held"
                return try arm(driver)
            }
            shortfall = nil
            pending = .requesting(k)
            try driver.requestEndpoint(EndpointEvent(kind: "balloon", action: .open, key: k))
        case .deflate:
            guard let k = held.keys.max(), let frames = held[k] else { return }
            if frames.isEmpty {
                pending = .fetching(k)
                try driver.requestEndpoint(EndpointEvent(kind: "balloon", action: .open, key: k))
            } else {
                try send(frames, on: deflatePosition, pool: &deflatePool, driver)
                pending = .deflating(k)
            }
        case .hold(let why):
            // Logged when the reason changes, not its figures (a countdown, MiB available).
            if let why, why.filter({ !$0.isNumber }) != shortfall?.filter({ !$0.isNumber }) {
                PluginLog.notice("balloon: target \(targetPages >> 8) MiB, holding \(held.count * chunkMiB) MiB: \(why)")
            }
            shortfall = why
        }
        try arm(driver)
    }

    /// The timer runs while pages are held (the low-memory check) or the
    /// target is not met (retry); idle otherwise.
    private func arm(_ driver: DeviceDriver) throws {
        let wanted = !held.isEmpty || Int(targetPages) / framesPerChunk > held.count
        guard wanted != timerArmed else { return }
        if wanted { try timer.arm(after: Self.checkInterval, every: Self.checkInterval) } else { try timer.disarm() }
        timerArmed = wanted
    }

    private func send(_ frames: [UInt32], on position: Int, pool: inout DMABufferPool?, _ driver: DeviceDriver) throws {
        guard var p = pool, let slot = p.take() else { throw PluginError("balloon: no free buffer for queue \(position)") }
        let s = p.slice(slot), region = driver.device.region
        for (i, f) in frames.enumerated() { region.storeLE32(f, s, at: i * 4) }
        let q = driver.queues[position]
        do { try q.queue.add([.readable(region.deviceAddress(s), frames.count * 4)], token: UInt64(slot)) } catch {
            p.give(slot)
            pool = p
            throw error
        }
        pool = p
        if q.queue.publish() { driver.transport.notify(q.index) }
    }

    private func writeActual(_ driver: DeviceDriver) throws {
        let actual = UInt32(held.count * framesPerChunk).littleEndian
        try withUnsafeBytes(of: actual) { try driver.transport.writeConfigBytes(offset: 4, from: $0) }
    }

    // MARK: events

    /// The supervisor's answer to `open` of a chunk.
    func endpointEvent(_ event: EndpointEvent, _ driver: DeviceDriver) throws {
        guard event.kind == "balloon", pending == .requesting(event.key) || pending == .fetching(event.key) else { return }
        let fetching = pending == .fetching(event.key)
        pending = nil
        switch event.action {
        case .opened:
            let frames = (event.facts["frames"] ?? "").split(separator: " ").compactMap { UInt32($0, radix: 16) }
            guard frames.count == framesPerChunk, !frames.contains(0) else {
                refusals &+= 1
                shortfall = "the supervisor sent \(frames.count) usable frame numbers for chunk \(event.key)"
                PluginLog.error("balloon: \(shortfall!)")
                if !fetching { driverClose(event.key, driver) }
                return
            }
            if fetching {
                held[event.key] = frames
                try send(frames, on: deflatePosition, pool: &deflatePool, driver)
                pending = .deflating(event.key)
            } else {
                try send(frames, on: inflatePosition, pool: &inflatePool, driver)
                pending = .inflating(event.key, frames)
            }
        default:
            refusals &+= 1
            let why = event.facts["error"] ?? "refused"
            if shortfall != why { PluginLog.warning("balloon: chunk \(event.key) not held: \(why)") }
            shortfall = "the supervisor could not hold more: \(why)"
            try arm(driver)
        }
    }

    private func driverClose(_ k: Int, _ driver: DeviceDriver) {
        try? driver.requestEndpoint(EndpointEvent(kind: "balloon", action: .close, key: k))
    }

    /// inflateq or deflateq returned the buffer: the host knows.
    func interrupt(queue position: Int, _ driver: DeviceDriver) throws {
        let inflate = position == inflatePosition
        while let used = try driver.queues[position].queue.popUsed() {
            // The queue core checked the token is one of ours in flight.
            if inflate { inflatePool?.give(Int(used.token)) } else { deflatePool?.give(Int(used.token)) }
            switch pending {
            case .inflating(let k, let frames)? where inflate:
                held[k] = frames
                inflated &+= 1
            case .deflating(let k)? where !inflate:
                held[k] = nil
                deflated &+= 1
                driverClose(k, driver)
            default:
                PluginLog.warning("balloon: queue \(position) returned a buffer nothing waited for")
                continue
            }
            pending = nil
            try writeActual(driver)
        }
        try step(driver)
    }

    /// The timer or the PSI trigger.
    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        let mem = MemInfo.read()
        let total = mem?["MemTotal"] ?? 0, available = mem?["MemAvailable"] ?? UInt64.max
        var pressed = false
        if fd == timer.fd {
            _ = timer.consume()
            pressed = BalloonPolicy.lowMemory(available: available, total: total)
        } else if let pressure, fd == pressure.fd {
            pressed = pressure.take()
        }
        if pressed, deflateOnOOM, policy.pressure(held: held.count, available: available, total: total, now: monotonic(), holdOff: holdOff) {
            pressureDeflates &+= 1
            PluginLog.notice("balloon: memory pressure (\(fd == timer.fd ? "low memory" : "PSI trigger"), \(available >> 20) MiB available): deflating to \((policy.ceiling ?? 0) * chunkMiB) MiB")
        }
        try step(driver)
    }

    var counters: [String: UInt64] {
        ["inflated_chunks": inflated, "deflated_chunks": deflated, "pressure_deflates": pressureDeflates, "refusals": refusals]
    }

    var facts: [String: ConfigValue] {
        ["target": .text("\(targetPages) pages (\(targetPages >> 8) MiB)"),
         "held": .text("\(held.count * framesPerChunk) pages (\(held.count * chunkMiB) MiB), pinned by the supervisor"),
         "inflate": .text(shortfall.map { "short of the target: \($0)" } ?? (pending == nil ? "at the target" : "moving")),
         "deflate_on_oom": .text(deflateOnOOM ? (pressure == nil ? "yes (low-memory check; no PSI trigger)" : "yes (PSI trigger and low-memory check)") : "not negotiated")]
    }

    // MARK: hand-over

    struct Saved: Codable {
        var inflatePool: PoolPlacement?, deflatePool: PoolPlacement?
        /// Held chunk numbers (their frames are asked again when needed).
        var held: [Int]
        var pending: Pending?
        var policy: BalloonPolicy
        var inflated: UInt64, deflated: UInt64, pressureDeflates: UInt64, refusals: UInt64
    }

    var saved: Saved {
        Saved(inflatePool: inflatePool.map(PoolPlacement.init), deflatePool: deflatePool.map(PoolPlacement.init),
              held: held.keys.sorted(), pending: pending, policy: policy,
              inflated: inflated, deflated: deflated, pressureDeflates: pressureDeflates, refusals: refusals)
    }

    func resume(_ driver: DeviceDriver, _ s: Saved) throws {
        guard let ip = s.inflatePool, let dp = s.deflatePool,
              ip.bufferSize == bufferSize, dp.bufferSize == bufferSize else {
            throw PluginError("the record's balloon buffers do not fit this plugin")
        }
        guard s.policy.chunkPages == framesPerChunk, s.held.allSatisfy({ (0..<chunks).contains($0) }),
              Set(s.held).count == s.held.count else {
            throw PluginError("the record's held chunks do not fit the balloon endpoint")
        }
        switch s.pending {
        case nil: break
        case .requesting(let k)?:
            guard (0..<chunks).contains(k), !s.held.contains(k) else { throw PluginError("the record asks for chunk \(k) again") }
        case .inflating(let k, _)?:
            guard (0..<chunks).contains(k), !s.held.contains(k) else { throw PluginError("the record's chunk \(k) in inflateq does not fit") }
        case .fetching(let k)?, .deflating(let k)?:
            guard s.held.contains(k) else { throw PluginError("the record moves chunk \(k), which it does not hold") }
        }
        inflatePool = try driver.restoredPool(ip, queue: inflatePosition, "inflateq")
        deflatePool = try driver.restoredPool(dp, queue: deflatePosition, "deflateq")
        held = Dictionary(uniqueKeysWithValues: s.held.map { ($0, []) })
        // A chunk in inflateq keeps no frames from the record (shared memory):
        // once it is held, its frames come from the supervisor when it deflates.
        if case .inflating(let k, _)? = s.pending { pending = .inflating(k, []) } else { pending = s.pending }
        policy = s.policy
        inflated = s.inflated; deflated = s.deflated; pressureDeflates = s.pressureDeflates; refusals = s.refusals
    }

    /// What the device returned during the pause is taken now; a chunk
    /// asked for and never answered (the answer went to the old process) is
    /// asked again — the supervisor answers an `open` of a held chunk with
    /// its frames again.
    func continueAfterHandover(_ driver: DeviceDriver) throws {
        targetPages = try driver.transport.readConfig(UInt32.self, at: 0)
        try writeActual(driver)
        switch pending {
        case .requesting(let k)?, .fetching(let k)?:
            try driver.requestEndpoint(EndpointEvent(kind: "balloon", action: .open, key: k))
        default: break
        }
        try interrupt(queue: inflatePosition, driver)
        try interrupt(queue: deflatePosition, driver)
    }
}
