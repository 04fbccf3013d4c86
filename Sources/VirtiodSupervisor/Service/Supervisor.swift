import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodProtocol

/// The supervisor: keeps the table of virtio functions, claims what the
/// policy (or root, through virtioctl) asks for, runs a plugin process per
/// claimed device, and gives devices back. Single-threaded: everything runs
/// from `SupervisorLoop`.
public final class Supervisor {
    let options: SupervisorOptions
    var policy = ClaimPolicy()
    var configError: String?
    var devices: [String: ManagedDevice] = [:]
    /// Plugins stopped with `virtioctl unload`: their devices stay claimed and quiet.
    var unloadedPlugins: Set<String> = []
    let binding = PCIBinding()
    let checks = ClaimChecks()

    public init(options: SupervisorOptions) {
        self.options = options
    }

    // MARK: configuration

    /// Read the configuration; on error keep the last good one and say where the error is.
    @discardableResult
    func loadConfig() -> Bool {
        do {
            policy = try ClaimPolicy.load(main: options.configFile, dropInDirectory: options.configDirectory)
            configError = nil
            Log.info("configuration loaded: \(policy.rules.count) [Device] section(s)")
            for d in devices.values { d.attempted = false; d.heldBack = false }
            return true
        } catch {
            configError = "\(error)"
            Log.error("configuration error: \(error); keeping the last good configuration (\(policy.rules.count) section(s))")
            return false
        }
    }

    // MARK: discovery

    /// Bring the table in line with what sysfs shows, then claim what the policy wants.
    func reconcile() {
        let found: [VirtioFunction]
        do { found = try Discovery.virtioFunctions() } catch {
            Log.error("discovery failed: \(error)")
            return
        }
        let present = Set(found.map(\.address))
        for (address, d) in devices where !present.contains(address) {
            Log.notice("device removed", device: address)
            drop(d)
            devices[address] = nil
        }
        for f in found {
            let d = devices[f.address] ?? {
                Log.info("found \(f.type ?? "unknown") device (\(f.driver ?? "no driver"))", device: f.address)
                let n = ManagedDevice(function: f)
                devices[f.address] = n
                return n
            }()
            d.function = f
            d.identity = identity(of: f, keeping: d.identity)
            d.rule = policy.rule(for: f, identity: d.identity)
            if d.claimed == nil, d.state != .refused, d.state != .failed { d.state = .unclaimed; d.reason = nil }
            if d.claimed == nil, !d.attempted, !d.heldBack, d.rule?.claim == true {
                d.attempted = true
                claim(d, force: d.rule?.force ?? false)
            }
        }
        updateStatus()
    }

    /// MAC and serial as the kernel shows them while it drives the function.
    func identity(of f: VirtioFunction, keeping old: DeviceIdentity) -> DeviceIdentity {
        var id = old
        if let i = f.interfaces.first, let mac = TextFile.read("/sys/class/net/\(i)/address") { id.macAddress = mac }
        if let b = f.blockDevices.first, let serial = TextFile.read("/sys/class/block/\(b)/serial") { id.serial = serial }
        return id
    }

    // MARK: claiming

    func pluginPath(_ type: String) -> String { "\(options.pluginDirectory)/virtiod-\(type)" }

    /// Take the device from the kernel and start its plugin. Errors land in the device's state.
    @discardableResult
    func claim(_ d: ManagedDevice, force: Bool) -> Result<Void, ClaimError> {
        guard d.claimed == nil else { return .success(()) }
        let result = Result<Void, ClaimError> { () throws(ClaimError) in try takeDevice(d, force: force) }
        switch result {
        case .success:
            d.heldBack = false
        case .failure(let e):
            if case .refused = e { d.state = .refused } else { d.state = .failed }
            d.reason = e.description
            Log.error("not claimed: \(e)", device: d.address)
        }
        updateStatus()
        return result
    }

    private func takeDevice(_ d: ManagedDevice, force: Bool) throws(ClaimError) {
        let f = d.function
        guard let type = d.type, let name = f.type else {
            throw .refused("\(f.address) is a virtio device of unknown type \(f.typeID.map(String.init) ?? "?"); virtiod has no plugin for it")
        }
        guard access(pluginPath(name), X_OK) == 0 else {
            throw .refused("no plugin for \(name) devices (looked for \(pluginPath(name)))")
        }
        if let why = checks.groupPeers(f) { throw .refused(why) }
        if !force {
            if let why = checks.mountedFilesystems(f) { throw .refused(why) }
            if let why = checks.defaultRoute(f) { throw .refused(why) }
        }
        // ACCESS_PLATFORM is checked on the device itself once VFIO holds it,
        // before bus mastering is enabled: sysfs shows only what the kernel's
        // driver negotiated (virtio_balloon, for one, drops the bit).
        d.state = .claiming
        Log.info("claiming for the \(name) plugin\(force ? " (forced)" : "")", device: f.address)
        do {
            try binding.bindToVFIO(f.address)
        } catch {
            try? binding.giveBack(f.address)
            throw error as? ClaimError ?? .binding("\(error)")
        }
        do {
            d.claimed = try ClaimedDevice(address: f.address, type: type, iommuGroup: f.iommuGroup!, checks: checks,
                                          dmaSize: options.dmaSize)
        } catch {
            try? binding.giveBack(f.address)
            throw error as? ClaimError ?? .setup("VFIO setup failed: \(error)")
        }
        if type == .network {
            do {
                let tap = try d.claimed!.createTAP(name: d.rule?.interfaceName)
                Log.info("TAP interface \(tap.name) with \(d.claimed!.taps.count) queue(s)", device: f.address)
            } catch {
                release(d, giveBack: true)
                throw .setup("could not create the TAP interface: \(error)")
            }
        }
        d.claimed!.storeFDs()
        d.plugin = PluginProcess(name: name, executable: pluginPath(name))
        if unloadedPlugins.contains(name) {
            d.state = .unloaded
            d.plugin?.state = .exited
            Log.info("claimed; the \(name) plugin is unloaded, so the device stays quiet", device: f.address)
        } else {
            startPlugin(d)
        }
    }

    /// What a plugin for `d` is attached with (fds in `AttachInfo` order).
    func attachment(_ d: ManagedDevice, _ c: ClaimedDevice, name: String, mode: AttachMode) -> (AttachInfo, [FileDescriptor]) {
        let rule = d.rule
        var info = AttachInfo(address: d.address, type: name, dmaSize: c.memory.size, iovaBase: ClaimedDevice.iovaBase,
                              vectors: c.vectors.count, intx: c.intx != nil, options: rule?.options ?? [:],
                              interfaceName: rule?.interfaceName, stateSize: c.stateMemory.size, mode: mode)
        info.tapInterface = c.tap?.name
        info.tapQueues = c.taps.count
        let fds = [c.vfio.fd, c.memory.fd, c.stateMemory.fd] + c.vectors.map(\.fd) + (c.intx.map { [$0.fd] } ?? []) + c.taps.map(\.fd)
        return (info, fds)
    }

    /// Spawn the device's plugin and attach it; failures schedule a restart.
    /// A device whose last plugin left a hand-over record (it stopped on
    /// SIGTERM, or virtiod restarted) is adopted without a reset.
    func startPlugin(_ d: ManagedDevice) {
        guard let c = d.claimed, let p = d.plugin else { return }
        let mode: AttachMode = c.handover.isSaved ? .adopt : .fresh
        let (info, fds) = attachment(d, c, name: p.name, mode: mode)
        do {
            try p.start(attach: info, fds: fds, address: d.address)
            d.state = .starting
            d.reason = nil
            Log.info("plugin started (pid \(p.child!.pid))\(mode == .adopt ? ", taking over the running device" : "")",
                     device: d.address, plugin: p.name)
        } catch {
            pluginFailed(d, why: "could not start \(p.executable): \(error)")
        }
    }

    /// udev finished with a network interface; if it is one of our TAPs, its
    /// link policy (MACAddressPolicy=) may have replaced the device's MAC
    /// address that was set right after creation: put it back.
    func reassertTAP(_ name: String) {
        guard let c = devices.values.compactMap(\.claimed).first(where: { $0.tap?.name == name }) else { return }
        do { try c.applyTAPAddress() } catch { Log.warning("TAP \(name): \(error)", device: c.address) }
    }

    /// A plugin died or failed: reset the device (its state cannot be
    /// trusted) and start it again with back-off; give up after 5 failures
    /// within a minute.
    func pluginFailed(_ d: ManagedDevice, why: String) {
        guard let p = d.plugin else { return }
        let hadTakenOver = p.state == .running || p.mode != .adopt
        p.detach()
        p.state = .failed
        p.lastExit = why
        d.state = .failed
        d.reason = why
        let now = monotonic()
        p.failures = p.failures.filter { now - $0 < 60 } + [now]
        // A plugin that stopped cleanly (SIGTERM) left a hand-over record:
        // its successor continues the device. Otherwise (crash, kill -9, a
        // record the successor refused) the device's state cannot be
        // trusted: reset it, and the next plugin starts afresh.
        if let c = d.claimed, c.handover.isSaved, hadTakenOver {
            Log.info("the plugin left a hand-over record; its successor takes over without a reset", device: d.address, plugin: p.name)
        } else {
            d.claimed?.resetDevice()
        }
        if p.failures.count >= 5 {
            p.restartAt = nil
            d.reason = "\(why); \(p.failures.count) failures within a minute, not restarting (virtioctl release / claim to retry)"
            Log.error(d.reason!, device: d.address, plugin: p.name)
        } else {
            let delay = min(30, 0.5 * Double(1 << (p.failures.count - 1)))
            p.restartAt = now + delay
            Log.warning("\(why); restarting in \(delay) s", device: d.address, plugin: p.name)
        }
        updateStatus()
    }

    func restartDuePlugins() {
        let now = monotonic()
        for d in devices.values {
            guard let p = d.plugin, let at = p.restartAt, at <= now, d.claimed != nil else { continue }
            p.restartAt = nil
            p.restarts += 1
            startPlugin(d)
        }
    }

    var nextRestart: Double? { devices.values.compactMap { $0.plugin?.restartAt }.min() }

    /// Heartbeat: each live plugin is asked for a report every quarter of its
    /// timeout (at most every 5 s); one that says nothing for the timeout
    /// (hung, stopped, stuck in a loop) is killed and restarted like a crashed
    /// one. The timeout is the device rule's `HeartbeatSec=`, else 20 s.
    static let defaultHeartbeatTimeout = 20.0

    func checkHeartbeats() {
        let now = monotonic()
        for d in devices.values {
            guard let p = d.plugin, let child = p.child, let socket = p.socket, p.state != .stopping else { continue }
            let timeout = d.rule?.heartbeatTimeout ?? Self.defaultHeartbeatTimeout
            if now - p.lastHeard > timeout {
                kill(child.pid, SIGKILL)
                _ = try? child.wait()
                pluginFailed(d, why: "plugin missed its heartbeat (silent for \(Int(now - p.lastHeard)) s); killed")
            } else if now - p.lastAsked >= min(5, timeout / 4) {
                p.lastAsked = now
                try? socket.send(PluginMessage(kind: .query).encoded())
            }
        }
    }

    /// Stop the plugin, close the device's fds and, if `giveBack`, hand it to the kernel again.
    func release(_ d: ManagedDevice, giveBack: Bool) {
        guard d.claimed != nil || d.plugin != nil else { return }
        d.state = .stopping
        d.plugin?.stop()
        d.plugin?.restartAt = nil
        d.claimed?.removeStoredFDs()
        d.claimed?.close()
        d.claimed = nil
        if giveBack {
            do {
                try binding.giveBack(d.address)
                Log.info("given back to the kernel (driver now: \(binding.currentDriver(d.address) ?? "none"))", device: d.address)
            } catch {
                Log.error("could not give the device back: \(error)", device: d.address)
            }
        }
        d.plugin = nil
        d.state = .unclaimed
        d.reason = nil
        updateStatus()
    }

    /// The device went away (hot-unplug): drop everything, nothing to give back.
    func drop(_ d: ManagedDevice) {
        if let p = d.plugin, let child = p.child { kill(child.pid, SIGKILL); _ = try? child.wait() }
        d.plugin?.detach()
        d.claimed?.removeStoredFDs()
        d.claimed?.close()
        d.claimed = nil
        d.plugin = nil
    }

    func shutdown() {
        for d in devices.values.sorted(by: { $0.address < $1.address }) where d.claimed != nil {
            release(d, giveBack: true)
        }
    }

    // MARK: plugin messages

    func pluginMessage(_ d: ManagedDevice) {
        guard let p = d.plugin, let socket = p.socket else { return }
        let received = try? socket.receive()
        p.lastHeard = monotonic()
        for f in received?.fds ?? [] { try? f.close() }
        guard let bytes = received?.bytes, !bytes.isEmpty else {
            // Hung up: the process is gone or going; reap it.
            reap(d, hungUp: true)
            return
        }
        guard let m = try? PluginMessage.decode(bytes) else {
            Log.warning("unreadable message from plugin", device: d.address, plugin: p.name)
            return
        }
        switch m.kind {
        case .status:
            p.lastStatusWasReply = m.reply ?? false
            let first = p.state != .running
            p.report = m.status
            p.state = .running
            d.state = .running
            d.reason = nil
            if first {
                Log.info("running: \(m.status?.negotiated.names.joined(separator: " ") ?? "")", device: d.address, plugin: p.name)
                updateStatus()
            }
        case .error:
            Log.error("plugin reports: \(m.message ?? "unknown error")", device: d.address, plugin: p.name)
            d.reason = m.message
        default:
            Log.warning("unexpected \(m.kind) from plugin", device: d.address, plugin: p.name)
        }
    }

    /// Ask a running plugin for a fresh report (it re-reads the device
    /// config) and wait up to `timeoutMS` for it.
    func refreshReport(_ d: ManagedDevice, timeoutMS: Int32 = 1000) {
        guard let p = d.plugin, p.state == .running, let socket = p.socket else { return }
        guard (try? socket.send(PluginMessage(kind: .query).encoded())) != nil else { return }
        let deadline = monotonic() + Double(timeoutMS) / 1000
        while let s = p.socket, monotonic() < deadline {
            let left = Int32(max(1, (deadline - monotonic()) * 1000))
            guard let ready = try? Poll.readable([s.fd], timeoutMS: left), !ready.isEmpty else { continue }
            pluginMessage(d)
            if d.plugin?.state != .running || d.plugin?.lastStatusWasReply == true { break }
        }
    }

    /// SIGCHLD or hang-up: collect exited plugin processes.
    func reap(_ only: ManagedDevice? = nil, hungUp: Bool = false) {
        for d in only.map({ [$0] }) ?? Array(devices.values) {
            guard let p = d.plugin, let child = p.child, p.state != .stopping else { continue }
            var status = try? child.poll()
            if status == nil, hungUp {
                // The socket closed first; give the exit a moment to land.
                for _ in 0..<100 where status == nil { usleep(10_000); status = try? child.poll() }
            }
            guard let s = status else {
                if hungUp { kill(child.pid, SIGKILL); _ = try? child.wait(); pluginFailed(d, why: "plugin closed its socket") }
                continue
            }
            pluginFailed(d, why: "plugin \(p.describe(s))")
        }
    }

    // MARK: reporting

    func updateStatus() {
        let claimed = devices.values.filter { $0.claimed != nil }
        let running = claimed.filter { $0.state == .running }.count
        var s = "\(devices.count) virtio device(s), \(claimed.count) claimed, \(running) running"
        if let configError { s += "; config error: \(configError)" }
        ServiceNotifier.status(s)
    }

    func find(_ query: String?) throws(ControlError) -> ManagedDevice {
        guard let query, !query.isEmpty else { throw ControlError(.badRequest, "a device address is required") }
        if let d = devices[query] { return d }
        let matches = devices.values.filter { $0.address.hasSuffix(query) || $0.function.interfaces.contains(query) }
        guard matches.count == 1 else {
            throw ControlError(.noSuchDevice, matches.isEmpty ? "no virtio device \(query)"
                               : "\(query) is ambiguous: \(matches.map(\.address).sorted().joined(separator: ", "))")
        }
        return matches[0]
    }

    func pluginName(_ name: String?) throws(ControlError) -> String {
        guard let name, PluginProtocol.pluginNames.contains(name) else {
            throw ControlError(.badRequest, "unknown plugin '\(name ?? "")' (one of: \(PluginProtocol.pluginNames.joined(separator: ", ")))")
        }
        return name
    }

    func pluginReports() -> [PluginReport] {
        PluginProtocol.pluginNames.map { name in
            let users = devices.values.filter { $0.plugin?.name == name }.sorted { $0.address < $1.address }
            return PluginReport(name: name, executable: pluginPath(name), installed: access(pluginPath(name), X_OK) == 0,
                                stub: users.compactMap { $0.plugin?.report?.stub }.first,
                                devices: users.map(\.address), pids: users.compactMap { $0.plugin?.child?.pid })
        }
    }

    // MARK: control verbs

    func handle(_ request: ControlRequest, uid: UInt32) -> ControlResponse {
        guard request.version == ControlProtocol.version else {
            return .failure(ControlError(.unsupportedVersion, "protocol version \(request.version) not supported (this virtiod speaks \(ControlProtocol.version))"))
        }
        if !ControlProtocol.readOnlyVerbs.contains(request.verb), uid != 0 {
            return .failure(ControlError(.permissionDenied, "\(request.verb.rawValue) changes devices: only root may do that"))
        }
        do throws(ControlError) {
            switch request.verb {
            case .list:
                return ControlResponse(devices: devices.values.sorted { $0.address < $1.address }.map { $0.report() })
            case .status:
                let chosen = request.device == nil ? devices.values.sorted { $0.address < $1.address } : [try find(request.device)]
                for d in chosen { refreshReport(d) }
                return ControlResponse(devices: chosen.map { $0.report() })
            case .plugins:
                return ControlResponse(plugins: pluginReports())
            case .claim:
                let d = try find(request.device)
                if d.claimed != nil { return ControlResponse(devices: [d.report()], message: "\(d.address) is already claimed") }
                if case .failure(let e) = claim(d, force: request.force ?? false) {
                    let code: ControlError.Code = if case .refused = e { .refused } else { .failed }
                    return ControlResponse(ok: false, error: ControlError(code, e.description), devices: [d.report()])
                }
                return ControlResponse(devices: [d.report()], message: "\(d.address) claimed; the \(d.plugin?.name ?? "") plugin is starting")
            case .unload:
                let name = try pluginName(request.plugin)
                unloadedPlugins.insert(name)
                let users = devices.values.filter { $0.plugin?.name == name }.sorted { $0.address < $1.address }
                for d in users {
                    if request.release == true {
                        d.heldBack = true
                        release(d, giveBack: true)
                    } else {
                        d.plugin?.stop()
                        d.plugin?.restartAt = nil
                        d.state = .unloaded
                        d.reason = nil
                        Log.info("plugin unloaded; the device stays claimed, reset and quiet", device: d.address, plugin: name)
                    }
                }
                if request.release == true { reconcile() }
                updateStatus()
                return ControlResponse(devices: users.map { $0.report() },
                                       message: "\(name) unloaded from \(users.count) device(s)"
                                           + (request.release == true ? ", given back to the kernel" : ", which stay claimed"))
            case .load:
                let name = try pluginName(request.plugin)
                unloadedPlugins.remove(name)
                let users = devices.values.filter { $0.plugin?.name == name && $0.plugin?.child == nil && $0.claimed != nil }
                for d in users.sorted(by: { $0.address < $1.address }) {
                    d.plugin?.failures = []
                    startPlugin(d)
                }
                updateStatus()
                return ControlResponse(devices: users.map { $0.report() }, message: "\(name) loaded on \(users.count) device(s)")
            case .reload:
                let targets: [ManagedDevice]
                if let plugin = request.plugin {
                    let name = try pluginName(plugin)
                    targets = devices.values.filter { $0.plugin?.name == name }.sorted { $0.address < $1.address }
                    guard !targets.isEmpty else { throw ControlError(.badRequest, "no claimed device uses the \(name) plugin") }
                } else {
                    targets = [try find(request.device)]
                }
                let results = targets.map { reload($0) }
                let message = results.map(\.message).joined(separator: "\n")
                let ok = results.allSatisfy(\.ok)
                return ControlResponse(ok: ok, error: ok ? nil : ControlError(.failed, message),
                                       devices: targets.map { $0.report() }, message: message)
            case .release:
                let d = try find(request.device)
                guard d.claimed != nil else {
                    return ControlResponse(ok: false, error: ControlError(.badRequest, "\(d.address) is not claimed by virtiod"))
                }
                d.heldBack = true
                release(d, giveBack: true)
                reconcile()
                let driver = binding.currentDriver(d.address)
                return ControlResponse(devices: [d.report()], message: "\(d.address) released to \(driver ?? "no driver")")
            }
        } catch {
            return .failure(error)
        }
    }
}
