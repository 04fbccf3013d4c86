import Glibc
import VirtioSystem
import VirtiodProtocol

/// The control verbs (docs/control-protocol.md). Quick ones answer at once;
/// those that wait on plugins (status refreshes, reloads, stops) become
/// operations the loop steps, so one client's request never holds up
/// anything else.
extension Supervisor {
    func begin(_ request: ControlRequest, uid: UInt32) -> ControlReply {
        guard request.version == ControlProtocol.version else {
            return .done(.failure(ControlError(.unsupportedVersion,
                "protocol version \(request.version) not supported (this virtiod speaks \(ControlProtocol.version))")))
        }
        if !ControlProtocol.readOnlyVerbs.contains(request.verb), uid != 0 {
            return .done(.failure(ControlError(.permissionDenied, "\(request.verb.rawValue) changes devices: only root may do that")))
        }
        do throws(ControlError) {
            switch request.verb {
            case .list:
                return .done(ControlResponse(devices: devices.values.sorted { $0.address < $1.address }.map { $0.report() }))
            case .status:
                let chosen = request.device == nil ? devices.values.sorted { $0.address < $1.address } : [try find(request.device)]
                return .pending(StatusOperation(chosen))
            case .plugins:
                return .done(ControlResponse(plugins: pluginReports()))
            case .claim:
                let d = try find(request.device)
                if d.claimed != nil { return .done(ControlResponse(devices: [d.report()], message: "\(d.address) is already claimed")) }
                if case .failure(let e) = claim(d, force: request.force ?? false) {
                    let code: ControlError.Code = if case .refused = e { .refused } else { .failed }
                    return .done(ControlResponse(ok: false, error: ControlError(code, e.description), devices: [d.report()]))
                }
                return .done(ControlResponse(devices: [d.report()], message: "\(d.address) claimed; the \(d.plugin?.name ?? "") plugin is starting"))
            case .unload:
                let name = try pluginName(request.plugin)
                unloadedPlugins.insert(name)
                let users = devices.values.filter { $0.plugin?.name == name }.sorted { $0.address < $1.address }
                try refuseDuringReload(users)
                let release = request.release == true
                return .pending(StopOperation(users, self) { s in
                    for d in users {
                        if release {
                            d.heldBack = true
                            s.release(d, giveBack: true)
                        } else {
                            d.state = .unloaded
                            d.reason = nil
                            Log.info("plugin unloaded; the device stays claimed, reset and quiet", device: d.address, plugin: name)
                        }
                    }
                    if release { s.reconcile() }
                    s.updateStatus()
                    return ControlResponse(devices: users.map { $0.report() },
                                           message: "\(name) unloaded from \(users.count) device(s)"
                                               + (release ? ", given back to the kernel" : ", which stay claimed"))
                })
            case .load:
                let name = try pluginName(request.plugin)
                unloadedPlugins.remove(name)
                let users = devices.values.filter { $0.plugin?.name == name && $0.plugin?.isRunning == false && $0.claimed != nil }
                for d in users.sorted(by: { $0.address < $1.address }) {
                    // The manifest as installed now (an upgrade may have changed it).
                    let old = d.plugin!
                    d.plugin = old.successor(manifest: catalog[name] ?? old.manifest)
                    d.plugin?.failures = []
                    startPlugin(d)
                }
                updateStatus()
                return .done(ControlResponse(devices: users.map { $0.report() }, message: "\(name) loaded on \(users.count) device(s)"))
            case .reload:
                var plugin = request.plugin
                var device = request.device
                if let target = request.target {
                    // A plugin name if there is one by that name, else a device.
                    if knownPluginNames.contains(target) { plugin = target } else { device = target }
                }
                let targets: [ManagedDevice]
                if let plugin {
                    let name = try pluginName(plugin)
                    targets = devices.values.filter { $0.plugin?.name == name }.sorted { $0.address < $1.address }
                    guard !targets.isEmpty else { throw ControlError(.badRequest, "no claimed device uses the \(name) plugin") }
                } else {
                    targets = [try find(device)]
                }
                try refuseDuringReload(targets)
                return .pending(ReloadOperation(targets))
            case .restart:
                // Start the device's plugin again now: after it failed (the
                // failure count starts afresh), or, if it runs, stop it
                // (device reset) and start a new one.
                let d = try find(request.device)
                guard d.claimed != nil, let p = d.plugin else {
                    return .done(ControlResponse(ok: false, error: ControlError(.badRequest, "\(d.address) is not claimed by virtiod")))
                }
                try refuseDuringReload([d])
                let name = p.name
                return .pending(StopOperation([d], self) { s in
                    guard let old = d.plugin, d.claimed != nil else {
                        return ControlResponse(ok: false, error: ControlError(.failed, "\(d.address) went away"), devices: [d.report()])
                    }
                    s.unloadedPlugins.remove(name)
                    let fresh = old.successor(manifest: s.catalog[name] ?? old.manifest)
                    fresh.failures = []
                    fresh.restarts = old.restarts + 1
                    d.plugin = fresh
                    // Whatever the old process left, the device starts from a reset.
                    d.claimed?.resetDevice()
                    s.startPlugin(d)
                    s.updateStatus()
                    return ControlResponse(devices: [d.report()], message: "\(d.address): the \(name) plugin is starting again")
                })
            case .release:
                let d = try find(request.device)
                guard d.claimed != nil else {
                    return .done(ControlResponse(ok: false, error: ControlError(.badRequest, "\(d.address) is not claimed by virtiod")))
                }
                try refuseDuringReload([d])
                return .pending(StopOperation([d], self) { s in
                    d.heldBack = true
                    s.release(d, giveBack: true)
                    s.reconcile()
                    let driver = s.binding.currentDriver(d.address)
                    return ControlResponse(devices: [d.report()], message: "\(d.address) released to \(driver ?? "no driver")")
                })
            }
        } catch {
            return .done(.failure(error))
        }
    }

    private func refuseDuringReload(_ devices: [ManagedDevice]) throws(ControlError) {
        if let busy = devices.first(where: { $0.reload != nil }) {
            throw ControlError(.busy, "\(busy.address) is being reloaded; try again when that is done")
        }
    }

    /// The synchronous form, for tests: steps a pending operation until it
    /// answers (without the loop, plugins are not heard from meanwhile).
    public func handle(_ request: ControlRequest, uid: UInt32) -> ControlResponse {
        switch begin(request, uid: uid) {
        case .done(let r):
            return r
        case .pending(let op):
            while true {
                if let r = op.step(self, now: monotonic()) { return r }
                usleep(10_000)
            }
        }
    }
}

/// `status`: each running plugin is asked for a fresh report (it re-reads
/// the device config); the answer goes out when all have answered, or after
/// `timeout` with what is known.
final class StatusOperation: PendingOperation {
    static let timeout = 1.0
    let devices: [ManagedDevice]
    private var waiting: [(device: ManagedDevice, process: PluginProcess, replies: UInt64)] = []
    let deadline = monotonic() + StatusOperation.timeout

    init(_ devices: [ManagedDevice]) {
        self.devices = devices
        for d in devices {
            guard d.reload == nil, let p = d.plugin, p.state == .running, let socket = p.socket,
                  (try? socket.send(PluginMessage(kind: .query).encoded())) != nil else { continue }
            p.lastAsked = monotonic()
            waiting.append((d, p, p.replies))
        }
    }

    var wakeAt: Double { deadline }

    func step(_ s: Supervisor, now: Double) -> ControlResponse? {
        waiting.removeAll { $0.device.plugin !== $0.process || !$0.process.isRunning || $0.process.replies != $0.replies }
        guard waiting.isEmpty || now >= deadline else { return nil }
        return ControlResponse(devices: devices.map { $0.report() })
    }
}

/// Stop the plugins of `devices` (each resets its device) — all at once,
/// waiting up to `timeout` for them to exit and killing the rest — then
/// finish the verb.
final class StopOperation: PendingOperation {
    static let timeout = 3.0
    let stopping: [PluginProcess]
    let deadline = monotonic() + StopOperation.timeout
    let finish: (Supervisor) -> ControlResponse

    init(_ devices: [ManagedDevice], _ s: Supervisor, finish: @escaping (Supervisor) -> ControlResponse) {
        stopping = devices.compactMap { d in
            d.plugin?.restartAt = nil
            guard let p = d.plugin, p.isRunning else { return nil }
            d.state = .stopping
            p.requestStop()
            return p
        }
        self.finish = finish
    }

    var wakeAt: Double { min(deadline, monotonic() + 0.05) }

    func step(_ s: Supervisor, now: Double) -> ControlResponse? {
        guard now >= deadline || stopping.allSatisfy({ $0.hasExited || $0.process == nil && !$0.isRunning }) else { return nil }
        for p in stopping where p.isRunning { p.finish(timeout: 0, launcher: s.launcher) }
        return finish(s)
    }
}
