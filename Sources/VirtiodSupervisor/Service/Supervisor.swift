import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
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
    /// The plugin manifests (docs/plugin-guide.md): read with the config.
    var catalog = PluginCatalog()
    /// Starts plugin processes: as systemd units under systemd, as children otherwise.
    let launcher: any PluginLauncher
    let systemd: SystemdManager
    /// `--describe` answers by executable (see PluginDescription.swift).
    var descriptions: [String: (stamp: String, value: PluginSelfDescription?)] = [:]
    var devices: [String: ManagedDevice] = [:]
    /// Plugins stopped with `virtioctl unload`: their devices stay claimed and quiet.
    var unloadedPlugins: Set<String> = []
    let binding = PCIBinding()
    let checks = ClaimChecks()

    public convenience init(options: SupervisorOptions) {
        self.init(options: options, launcher: nil)
    }

    /// `launcher` nil: systemd units under systemd, children otherwise (tests pass a fake).
    init(options: SupervisorOptions, launcher: (any PluginLauncher)?) {
        self.options = options
        let systemd = SystemdManager()
        self.systemd = systemd
        self.launcher = launcher ?? (FDStore.available && SystemdManager.available ? UnitLauncher(systemd: systemd) : DirectLauncher())
        ShareMounter.shared = ShareMounter(systemd: FDStore.available && SystemdManager.available ? systemd : nil)
    }

    /// Tests: whether a device's hand-over area holds a record, without a device.
    var savedRecordOverride: ((ManagedDevice) -> Bool)?

    /// Whether `d`'s last plugin left a hand-over record.
    func hasSavedRecord(_ d: ManagedDevice) -> Bool {
        savedRecordOverride?(d) ?? (d.claimed?.handover.isSaved == true)
    }

    // MARK: configuration

    /// Read the plugin manifests: each bad one is logged (file:line) and skipped.
    func loadManifests() {
        catalog = PluginCatalog.load(directories: options.manifestDirectories, endpointKinds: EndpointKinds.names)
        for e in catalog.errors { Log.error("plugin manifest \(e); skipped") }
        let names = catalog.manifests.keys.sorted()
        Log.info("\(names.count) plugin manifest(s): \(names.joined(separator: ", "))"
                 + (catalog.errors.isEmpty ? "" : "; \(catalog.errors.count) skipped"))
    }

    /// Read the configuration; on error keep the last good one and say where the error is.
    @discardableResult
    func loadConfig() -> Bool {
        loadManifests()
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

    /// The plugin for a device: the rule's `Plugin=`, else the (first by
    /// name) manifest whose `DeviceType=` lists the device's type.
    func manifest(for d: ManagedDevice) throws(ClaimError) -> PluginManifest {
        let f = d.function
        let typeName = f.type ?? "type \(f.typeID.map(String.init) ?? "?")"
        if let name = d.rule?.plugin {
            guard let m = catalog[name] else {
                throw .refused("\(d.rule!.origin) asks for plugin '\(name)', but no manifest \(name).plugin is installed "
                               + "(looked in \(options.manifestDirectories.joined(separator: ", ")))")
            }
            guard m.drives(f.typeID) else {
                throw .refused("plugin '\(name)' (\(m.path)) drives \(m.deviceTypeNames.joined(separator: ", ")) devices, not \(typeName)")
            }
            return m
        }
        let candidates = catalog.candidates(for: f.typeID)
        guard let m = candidates.first else {
            throw .refused("no plugin for \(typeName) devices (no manifest in \(options.manifestDirectories.joined(separator: ", ")) "
                           + "lists DeviceType=\(typeName))")
        }
        if candidates.count > 1 {
            Log.notice("plugins \(candidates.map(\.name).joined(separator: ", ")) all drive \(typeName) devices; using \(m.name) (Plugin= chooses)",
                       device: d.address)
        }
        return m
    }

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
        guard let type = d.type else {
            throw .refused("\(f.address) is a virtio device of unknown type \(f.typeID.map(String.init) ?? "?"); virtiod has no plugin for it")
        }
        let manifest = try manifest(for: d)
        guard access(manifest.exec, X_OK) == 0 else {
            throw .refused("plugin \(manifest.name): \(manifest.exec) (from \(manifest.path)) is not an executable file")
        }
        if let why = checks.groupPeers(f, noIOMMU: policy.service.unsafeNoIOMMU) { throw .refused(why) }
        // In no IOMMU group, with UnsafeNoIOMMU=yes: vfio's no-IOMMU mode.
        let noIOMMU = f.iommuGroup == nil
        let kinds = try manifest.endpoints.map { entry throws(ClaimError) in try EndpointKinds.choose(entry, preferred: d.rule?.endpoint) }
        if noIOMMU, let kind = kinds.first(where: { $0.unavailableWithoutIOMMU != nil }) {
            throw .refused("\(f.address) has no IOMMU and the \(kind.kind) endpoint cannot work without one: \(kind.unavailableWithoutIOMMU!)")
        }
        if !force {
            if let why = checks.mountedFilesystems(f) { throw .refused(why) }
            if let why = checks.defaultRoute(f) { throw .refused(why) }
        }
        // ACCESS_PLATFORM is checked on the device itself once VFIO holds it,
        // before bus mastering is enabled: sysfs shows only what the kernel's
        // driver negotiated (virtio_balloon, for one, drops the bit).
        d.state = .claiming
        Log.info("claiming for the \(manifest.name) plugin\(force ? " (forced)" : "")", device: f.address)
        var group = f.iommuGroup
        // Without an IOMMU: vfio's no-IOMMU mode where the kernel has it
        // (CONFIG_VFIO_NOIOMMU), uio_pci_generic where it does not (Debian's kernels).
        let uio = noIOMMU && !binding.hasVFIONoIOMMUMode
        var function: UIOFunction?
        do {
            if noIOMMU && !uio {
                if try binding.enableNoIOMMUMode() {
                    Log.warning("vfio no-IOMMU mode enabled (UnsafeNoIOMMU=yes, \(policy.service.unsafeNoIOMMUOrigin ?? "?")): "
                                + "claimed devices reach all of memory and the kernel is tainted", device: f.address)
                }
            }
            if uio {
                Log.warning("no IOMMU (UnsafeNoIOMMU=yes, \(policy.service.unsafeNoIOMMUOrigin ?? "?")) and no VFIO no-IOMMU mode in "
                            + "this kernel: lending the device through uio_pci_generic; it reaches all of memory", device: f.address)
                try binding.bind(f.address, to: PCIBinding.uioDriver)
                function = try binding.openUIO(f.address)
            } else {
                try binding.bindToVFIO(f.address)
                if noIOMMU { group = try binding.iommuGroup(f.address) }
            }
        } catch {
            try? binding.giveBack(f.address)
            throw error as? ClaimError ?? .binding("\(error)")
        }
        do {
            let size = { (transport: VirtioPCITransport, offered: UInt64) in
                manifest.dmaSize(queues: kinds.map { $0.plannedQueues(transport, offered: offered) }.max() ?? 1)
            }
            if let function {
                d.claimed = try ClaimedDevice(uio: function, address: f.address, type: type, checks: checks, dmaSize: size)
            } else {
                d.claimed = try ClaimedDevice(address: f.address, type: type, iommuGroup: group!, noIOMMU: noIOMMU,
                                              bypassAllowed: policy.service.unsafeNoIOMMU, checks: checks, dmaSize: size)
            }
        } catch {
            try? binding.giveBack(f.address)
            throw error as? ClaimError ?? .setup("VFIO setup failed: \(error)")
        }
        for kind in kinds {
            do {
                d.claimed!.endpoints.append(try kind.create(for: d.claimed!, rule: d.rule))
            } catch {
                release(d, giveBack: true)
                throw .setup("could not make the \(kind.kind) endpoint: \(error)")
            }
        }
        d.claimed!.storeFDs()
        d.plugin = PluginProcess(manifest: manifest)
        if unloadedPlugins.contains(manifest.name) {
            d.state = .unloaded
            d.plugin?.state = .exited
            Log.info("claimed; the \(manifest.name) plugin is unloaded, so the device stays quiet", device: f.address)
        } else {
            startPlugin(d)
        }
    }

    /// What a plugin for `d` is attached with: the info and the fds it names.
    func attachment(_ d: ManagedDevice, _ c: ClaimedDevice, plugin: PluginManifest, mode: AttachMode) -> (AttachInfo, [FileDescriptor]) {
        let named = c.pluginFDs
        var info = AttachInfo(address: d.address, type: d.function.type ?? "unknown", typeID: d.function.typeID ?? 0,
                              plugin: plugin.name, dmaSize: c.memory.size, iovaBase: ClaimedDevice.iovaBase,
                              stateSize: c.stateMemory.size, options: d.rule?.options ?? [:], mode: mode,
                              fds: named.map(\.name), endpoints: c.endpoints.map(\.info))
        if let segment = c.addressMap.segmentSize {
            info.dmaSegmentSize = segment
            info.dmaSegments = c.addressMap.segmentBases
        }
        return (info, named.map(\.fd))
    }

    /// Where a plugin process's socket waits in the fd store (so a restart
    /// of virtiod finds the running plugin again).
    func socketStoreName(_ d: ManagedDevice, _ p: PluginProcess) -> String {
        "\(ClaimedDevice.storeSlug(d.address))/plugin.\(p.name).\(p.generation)"
    }

    /// Start `p` (the device's plugin, or a reload's successor) and attach it.
    func launch(_ p: PluginProcess, for d: ManagedDevice, _ c: ClaimedDevice, mode: AttachMode) throws {
        let (info, fds) = attachment(d, c, plugin: p.manifest, mode: mode)
        try p.start(attach: info, fds: fds, launcher: launcher)
        if let socket = p.socket {
            p.storeName = socketStoreName(d, p)
            do { try FDStore.store(socket.fd, name: p.storeName!) } catch {
                Log.warning("fd store: \(error); a restart of virtiod will restart this plugin", device: d.address, plugin: p.name)
            }
        }
    }

    /// Start the device's plugin and attach it; failures schedule a restart.
    /// A device whose last plugin left a hand-over record (it stopped on
    /// SIGTERM, or an earlier virtiod did) is adopted without a reset.
    func startPlugin(_ d: ManagedDevice) {
        guard let c = d.claimed, let p = d.plugin else { return }
        let mode: AttachMode = c.handover.isSaved ? .adopt : .fresh
        do {
            if mode == .fresh {
                try c.updatingStore {
                    var renewed = false
                    for e in c.endpoints { if try e.beforeFreshPlugin(c) { renewed = true } }
                    return renewed
                }
            }
            try launch(p, for: d, c, mode: mode)
            d.state = .starting
            d.reason = nil
            Log.info("plugin started (\(p.unit.map { "unit \($0)" } ?? "pid \(p.pid.map(String.init) ?? "?")"))"
                     + (mode == .adopt ? ", taking over the running device" : ""), device: d.address, plugin: p.name)
        } catch {
            pluginFailed(d, why: "could not start \(p.executable): \(error)")
        }
    }

    /// udev finished with a network interface: endpoints that made it may
    /// need to set something again (a TAP its MAC address).
    func interfaceAppeared(_ name: String) {
        for c in devices.values.compactMap(\.claimed) {
            for e in c.endpoints { e.interfaceAppeared(name) }
        }
    }

    /// A plugin died or failed: reset the device (its state cannot be
    /// trusted) and start it again with back-off; give up after 5 failures
    /// within a minute.
    func pluginFailed(_ d: ManagedDevice, why: String) {
        guard let p = d.plugin else { return }
        let hadTakenOver = p.state == .running || p.mode != .adopt
        p.forget(launcher: launcher)
        p.state = .failed
        p.lastExit = why
        d.state = .failed
        d.reason = why
        let now = monotonic()
        let burst = d.rule?.restartLimitBurst ?? DeviceRule.defaultRestartLimitBurst
        let interval = d.rule?.restartLimitInterval ?? DeviceRule.defaultRestartLimitInterval
        p.failures = p.failures.filter { now - $0 < interval } + [now]
        // A plugin that stopped cleanly (SIGTERM) left a hand-over record:
        // its successor continues the device. Otherwise (crash, kill -9, a
        // record the successor refused) the device's state cannot be
        // trusted: reset it, and the next plugin starts afresh.
        if let c = d.claimed, c.handover.isSaved, hadTakenOver {
            Log.info("the plugin left a hand-over record; its successor takes over without a reset", device: d.address, plugin: p.name)
        } else {
            d.claimed?.resetDevice()
        }
        if p.failures.count >= burst {
            p.restartAt = nil
            d.reason = "\(why); \(p.failures.count) failures within \(Int(interval)) s (RestartLimitBurst=\(burst)), "
                + "not restarting: virtioctl restart \(d.address) tries again"
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
            p.generation += 1
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
        for d in devices.values where d.reload == nil {
            guard let p = d.plugin, let socket = p.socket, p.state != .stopping else { continue }
            let timeout = d.rule?.heartbeatTimeout ?? Self.defaultHeartbeatTimeout
            if now - p.lastHeard > timeout {
                p.kill(launcher: launcher)
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
        d.plugin?.stop(launcher: launcher)
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
        d.plugin?.kill(launcher: launcher)
        d.claimed?.removeStoredFDs()
        d.claimed?.close()
        d.claimed = nil
        d.plugin = nil
    }

    /// Stop every plugin (all at once: each resets its device), then give
    /// every device back.
    func shutdown() {
        let claimed = devices.values.filter { $0.claimed != nil }.sorted { $0.address < $1.address }
        let running = claimed.compactMap { d in d.plugin.flatMap { $0.isRunning ? $0 : nil } }
        for p in running { p.requestStop() }
        let deadline = monotonic() + 3
        for p in running { p.finish(timeout: max(0, deadline - monotonic()), launcher: launcher) }
        for d in claimed { release(d, giveBack: true) }
    }

    // MARK: plugin messages

    /// One message from `p` (nil: it hung up). A message that carries the
    /// sender's pid makes the supervisor follow that process, once checked.
    func receive(_ p: PluginProcess, device: String) -> PluginMessage? {
        guard let socket = p.socket, let received = try? socket.receive(maxFDs: 0), !received.bytes.isEmpty else { return nil }
        for f in received.fds { try? f.close() }
        p.lastHeard = monotonic()
        guard let m = try? PluginMessage.decode(received.bytes) else {
            Log.warning("unreadable message from plugin", device: device, plugin: p.name)
            return PluginMessage(kind: .error, message: "unreadable message")
        }
        if p.process == nil, let pid = m.pid {
            do { try p.identify(pid: pid, launcher: launcher) } catch {
                Log.error("plugin \(error)", device: device, plugin: p.name)
            }
        }
        if m.kind == .hello { p.version = m.message }
        return m
    }

    /// A message from one of `d`'s plugin processes (or its hang-up).
    func pluginMessage(_ d: ManagedDevice, from p: PluginProcess) {
        // A hung-up socket reads as closed forever: it was handled once.
        guard p.isRunning, !p.hungUp else { return }
        guard let m = receive(p, device: d.address) else {
            // Hung up: the process is gone or going.
            p.hungUp = true
            processEnded(d, p, hungUp: true)
            return
        }
        if m.kind == .endpoint {
            endpointRequest(d, from: p, m.endpoint)
            return
        }
        if let job = d.reload, job.follows(p) {
            job.message(m, from: p, self)
            return
        }
        guard p === d.plugin else { return }
        switch m.kind {
        case .hello:
            break
        case .status:
            p.lastStatusWasReply = m.reply ?? false
            if m.reply == true { p.replies &+= 1 }
            let first = p.state != .running
            p.report = m.status
            if let c = d.claimed { for e in c.endpoints { e.deviceReported(c, config: m.status?.config ?? [:]) } }
            p.state = .running
            d.state = .running
            d.reason = nil
            if first, p.reattached {
                Log.notice("its plugin (\(p.unit ?? "pid \(p.pid ?? 0)")) kept running and answers; no reset", device: d.address, plugin: p.name)
                updateStatus()
            } else if first {
                Log.info("running: \(m.status?.negotiated.names.joined(separator: " ") ?? "")", device: d.address, plugin: p.name)
                updateStatus()
            }
        case .error:
            Log.error("plugin reports: \(Log.quoted(m.message ?? "unknown error", limit: 500))", device: d.address, plugin: p.name)
            d.reason = m.message.map { Log.quoted($0, limit: 500) }
        default:
            Log.warning("unexpected \(m.kind) from plugin", device: d.address, plugin: p.name)
        }
    }

    /// A plugin asks for a part of an endpoint (a console's port): answer
    /// it, with the part's fd attached, and keep the fd store in step.
    func endpointRequest(_ d: ManagedDevice, from p: PluginProcess, _ event: EndpointEvent?) {
        guard let event, let c = d.claimed,
              let e = c.endpoints.first(where: { Swift.type(of: $0).kind == event.kind }) else {
            Log.warning("endpoint request for an endpoint the device does not have (\(event?.kind ?? "none"))", device: d.address, plugin: p.name)
            return
        }
        var answer: EndpointEvent?, fd: FileDescriptor?
        c.updatingStore {
            let fdsBefore = e.fds
            (answer, fd) = e.request(event, c)
            return e.fds != fdsBefore
        }
        guard let answer else { return }
        do { try p.socket?.send(PluginMessage(kind: .endpoint, endpoint: answer).encoded(), fds: fd.map { [$0] } ?? []) } catch {
            Log.warning("endpoint answer not sent: \(error)", device: d.address, plugin: p.name)
        }
        if !Swift.type(of: e).requestedFDsStay { try? fd?.close() }
    }

    /// An endpoint's own events (a process opened a console port): tell the device's running plugin.
    func endpointEvents(_ d: ManagedDevice, _ e: any Endpoint) {
        let events = e.drainEvents()
        guard let p = d.plugin, p.isRunning, d.reload == nil else { return }
        for event in events { try? p.socket?.send(PluginMessage(kind: .endpoint, endpoint: event).encoded()) }
    }

    /// One of `d`'s plugin processes exited (its pidfd turned readable) or hung up.
    func processEnded(_ d: ManagedDevice, _ p: PluginProcess, hungUp: Bool = false) {
        if let job = d.reload, job.follows(p) {
            if hungUp, !p.hasExited { p.kill(launcher: launcher) }
            job.exited(p, self)
            return
        }
        if p === d.plugin { pluginEnded(d, hungUp: hungUp) }
    }

    /// The device's plugin process ended (its pidfd turned readable) or hung up.
    func pluginEnded(_ d: ManagedDevice, hungUp: Bool = false) {
        guard let p = d.plugin, p.isRunning, p.state != .stopping else { return }
        if hungUp, let process = p.process, !process.waitForExit(timeoutMS: 200) {
            // The socket closed first; a process that keeps running without it is no use.
            p.kill(launcher: launcher)
            pluginFailed(d, why: "plugin closed its socket")
            return
        }
        pluginFailed(d, why: "plugin " + (launcher.exitDescription(p) ?? (hungUp ? "hung up" : "exited")))
    }

    // MARK: reporting

    func updateStatus() {
        let claimed = devices.values.filter { $0.claimed != nil }
        let running = claimed.filter { $0.state == .running }.count
        var s = "\(devices.count) virtio device(s), \(claimed.count) claimed, \(running) running"
        if let configError { s += "; config error: \(Log.quoted(configError, limit: 200))" }
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

    /// Plugin names `unload`, `load` and `reload` accept: installed
    /// manifests and plugins running now.
    var knownPluginNames: [String] {
        Array(Set(catalog.manifests.keys).union(devices.values.compactMap { $0.plugin?.name })).sorted()
    }

    func pluginName(_ name: String?) throws(ControlError) -> String {
        guard let name, knownPluginNames.contains(name) else {
            throw ControlError(.badRequest, "unknown plugin '\(name ?? "")' (one of: \(knownPluginNames.joined(separator: ", ")))")
        }
        return name
    }

    func pluginReports() -> [PluginReport] {
        knownPluginNames.map { name in
            let users = devices.values.filter { $0.plugin?.name == name }.sorted { $0.address < $1.address }
            let m = catalog[name] ?? users.first!.plugin!.manifest
            let running = users.compactMap { $0.plugin }.filter(\.isRunning)
            var r = PluginReport(name: name, executable: m.exec, installed: access(m.exec, X_OK) == 0,
                                 stub: users.compactMap { $0.plugin?.report?.stub }.first ?? describe(m)?.stub,
                                 devices: users.map(\.address), pids: running.compactMap(\.pid))
            r.manifest = catalog[name] == nil ? nil : m.path
            r.overrides = catalog.overridden[name] ?? []
            r.description = m.description
            r.deviceTypes = m.deviceTypeNames
            r.endpoints = m.endpoints
            r.version = running.compactMap { $0.report?.pluginVersion ?? $0.version }.first ?? describe(m)?.version
            r.units = running.compactMap(\.unit)
            r.unloaded = unloadedPlugins.contains(name)
            return r
        }
    }
}
