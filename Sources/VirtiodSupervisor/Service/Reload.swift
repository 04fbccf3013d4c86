import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

/// Hot reload (`virtioctl reload`): replace a device's plugin process by a
/// fresh one from the plugin's (maybe newly installed) executable without a
/// device reset. The successor starts in standby while the old process still
/// moves data, so a binary that fails to start costs no pause at all; only
/// then is the old one quiesced (it writes its hand-over record), the
/// successor resumes from the record, and the old one is told to exit. If
/// the successor refuses the record or dies, or the old one does not
/// quiesce in time, the old one resumes: a roll-back.
/// docs/architecture.md "Hand-over" has the sequence.
///
/// A state machine the supervisor's loop drives: messages and exits of both
/// processes move it on (`message`, `exited`), deadlines are checked in
/// `step`; nothing here waits.
final class DeviceReload {
    static let readyTimeout = 20.0
    static let quiesceTimeout = 5.0
    static let resumeTimeout = 10.0
    static let retireTimeout = 3.0

    enum Phase { case starting, quiescing, resuming, retiring, finished }

    struct Result: Error {
        var ok: Bool
        var message: String
    }

    let device: ManagedDevice
    let old: PluginProcess
    let next: PluginProcess
    private(set) var phase = Phase.starting
    private(set) var deadline: Double
    private(set) var result: Result?
    private var quiesceSent = 0.0, quiescedAt = 0.0, runningAt = 0.0

    init(device: ManagedDevice, old: PluginProcess, next: PluginProcess) {
        self.device = device
        self.old = old
        self.next = next
        deadline = monotonic() + Self.readyTimeout
    }

    var address: String { device.address }

    /// Whether the job takes messages and exits of `p` (after the switch the
    /// successor is the device's plugin, handled as usual).
    func follows(_ p: PluginProcess) -> Bool {
        p === old || (p === next && (phase == .starting || phase == .quiescing || phase == .resuming))
    }

    /// A message from the old process or the successor.
    func message(_ m: PluginMessage, from p: PluginProcess, _ s: Supervisor) {
        switch (phase, p === next, m.kind) {
        case (.starting, true, .ready):
            // 2. Quiesce the old one: it stops, writes its record, waits.
            quiesceSent = monotonic()
            enter(.quiescing, for: Self.quiesceTimeout, telling: old, .quiesce)
        case (.starting, true, .error):
            abandonSuccessor(s)
            fail(s, "the new \(old.name) plugin failed before taking over (\(m.message ?? "error")); rolled back: "
                 + "pid \(old.pid ?? 0) keeps running, traffic was not paused")
        case (.quiescing, false, .quiesced):
            // 3. The successor takes over from the record.
            resumeSuccessor()
        case (.quiescing, false, .error):
            abandonSuccessor(s)
            fail(s, "pid \(old.pid ?? 0) could not hand over (\(m.message ?? "error")); rolled back: it keeps running")
        case (.resuming, true, .status):
            next.report = m.status
            next.state = .running
            succeed(s)
        case (.resuming, true, .error):
            successorFailedAfterQuiesce(s, m.message ?? "error")
        case (_, false, .status):
            old.report = m.status
        default:
            break
        }
    }

    /// One of the two processes exited (its pidfd turned readable) or hung up.
    func exited(_ p: PluginProcess, _ s: Supervisor) {
        let why = s.launcher.exitDescription(p) ?? "exited"
        if p === next {
            switch phase {
            case .starting, .quiescing:
                abandonSuccessor(s)
                if phase == .quiescing { resumeOld(s) }
                fail(s, "the new \(old.name) plugin failed before taking over (\(why)); rolled back: pid \(old.pid ?? 0) "
                     + (phase == .quiescing ? "resumed" : "keeps running, traffic was not paused"))
            case .resuming:
                successorFailedAfterQuiesce(s, why)
            case .retiring, .finished:
                // It runs the device now: an ordinary crash.
                s.pluginEnded(device)
            }
        } else {
            switch phase {
            case .starting:
                abandonSuccessor(s)
                fail(s, "the old process ended during the reload (\(why))", oldGone: true)
            case .quiescing:
                if s.hasSavedRecord(device) {
                    // It wrote its record and left: the successor can still take over.
                    resumeSuccessor()
                } else {
                    abandonSuccessor(s)
                    fail(s, "pid \(old.pid ?? 0) died while quiescing (\(why))", oldGone: true)
                }
            case .resuming:
                // Its record is written; what matters now is the successor.
                break
            case .retiring:
                finishRetiring(s)
            case .finished:
                break
            }
        }
    }

    /// Deadlines.
    func step(_ s: Supervisor, now: Double) {
        guard now >= deadline else { return }
        switch phase {
        case .starting:
            abandonSuccessor(s)
            fail(s, "the new \(old.name) plugin did not get ready within \(Int(Self.readyTimeout)) s; rolled back: "
                 + "pid \(old.pid ?? 0) keeps running, traffic was not paused")
        case .quiescing:
            // The old process did not answer: take the reload back and tell it
            // to go on, so the device is never left paused.
            abandonSuccessor(s)
            resumeOld(s)
            fail(s, "pid \(old.pid ?? 0) did not quiesce within \(Int(Self.quiesceTimeout)) s; rolled back: it was told to resume")
        case .resuming:
            successorFailedAfterQuiesce(s, "no answer within \(Int(Self.resumeTimeout)) s")
        case .retiring:
            s.launcher.kill(old)
            finishRetiring(s)
        case .finished:
            break
        }
    }

    // MARK: transitions and outcomes

    private func enter(_ newPhase: Phase, for seconds: Double, telling p: PluginProcess, _ kind: PluginMessage.Kind) {
        phase = newPhase
        deadline = monotonic() + seconds
        try? p.socket?.send(PluginMessage(kind: kind).encoded())
    }

    /// The old process's record is written: the successor takes over from it.
    private func resumeSuccessor() {
        quiescedAt = monotonic()
        enter(.resuming, for: Self.resumeTimeout, telling: next, .resume)
    }

    private func succeed(_ s: Supervisor) {
        runningAt = monotonic()
        // 4. Retire the old process; it leaves without touching the device.
        try? old.socket?.send(PluginMessage(kind: .exit).encoded())
        old.state = .stopping
        next.reloads += 1
        next.lastReloadPauseMS = (runningAt - quiesceSent) * 1000
        next.lastHeard = monotonic()
        device.plugin = next
        device.successor = nil
        device.state = .running
        device.reason = nil
        let text = "\(address): \(old.name) reloaded without a device reset: pid \(old.pid ?? 0) → \(next.pid ?? 0), "
            + "pause \(milliseconds(runningAt - quiesceSent)) (quiesce \(milliseconds(quiescedAt - quiesceSent)), "
            + "take-over \(milliseconds(runningAt - quiescedAt)))"
        Log.notice(text, device: address, plugin: old.name)
        result = Result(ok: true, message: text)
        next.lastReload = text
        phase = .retiring
        deadline = monotonic() + Self.retireTimeout
        device.retiring = old
        if old.hasExited { finishRetiring(s) }
        s.updateStatus()
    }

    private func finishRetiring(_ s: Supervisor) {
        old.forget(launcher: s.launcher)
        old.state = .exited
        device.retiring = nil
        device.reload = nil
        phase = .finished
    }

    private func fail(_ s: Supervisor, _ why: String, oldGone: Bool = false) {
        Log.error("reload failed: \(why)", device: address, plugin: old.name)
        result = Result(ok: false, message: "\(address): reload failed: \(why)")
        device.plugin?.lastReload = result?.message
        device.successor = nil
        device.reload = nil
        phase = .finished
        if oldGone { s.pluginEnded(device) }
    }

    /// The successor failed after the old process wrote its record.
    private func successorFailedAfterQuiesce(_ s: Supervisor, _ why: String) {
        abandonSuccessor(s)
        guard s.hasSavedRecord(device), old.socket != nil, !old.hasExited else {
            // It took over and then died: the old state is stale now.
            old.kill(launcher: s.launcher)
            device.reload = nil
            device.successor = nil
            phase = .finished
            s.pluginFailed(device, why: "the new plugin died after taking over (\(why))")
            result = Result(ok: false, message: "\(address): the new \(old.name) plugin died after taking over (\(why)); "
                            + "the device is reset and restarted")
            return
        }
        resumeOld(s)
        fail(s, "the new \(old.name) plugin refused the hand-over (\(why)); rolled back: pid \(old.pid ?? 0) continues")
    }

    private func resumeOld(_ s: Supervisor) {
        try? old.socket?.send(PluginMessage(kind: .resume).encoded())
    }

    /// Kill a successor that will not take over (it has not touched the device).
    private func abandonSuccessor(_ s: Supervisor) {
        next.kill(launcher: s.launcher)
        device.successor = nil
    }
}

/// `virtioctl reload`: the devices one after another; answered when all are done.
final class ReloadOperation: PendingOperation {
    var queue: [ManagedDevice]
    var current: DeviceReload?
    var results: [DeviceReload.Result] = []
    let targets: [ManagedDevice]

    init(_ devices: [ManagedDevice]) {
        queue = devices
        targets = devices
    }

    var wakeAt: Double { current?.deadline ?? 0 }

    func step(_ s: Supervisor, now: Double) -> ControlResponse? {
        while true {
            if let c = current {
                c.step(s, now: now)
                guard let r = c.result else { return nil }
                results.append(r)
                current = nil
            }
            guard !queue.isEmpty else { break }
            let d = queue.removeFirst()
            switch s.startReload(d) {
            case .success(let job): current = job
            case .failure(let r): results.append(r)
            }
        }
        let message = results.map(\.message).joined(separator: "\n")
        let ok = results.allSatisfy(\.ok)
        return ControlResponse(ok: ok, error: ok ? nil : ControlError(.failed, message),
                               devices: targets.map { $0.report() }, message: message)
    }
}

extension Supervisor {
    /// Begin replacing `d`'s plugin process: the successor starts in standby.
    func startReload(_ d: ManagedDevice) -> Swift.Result<DeviceReload, DeviceReload.Result> {
        guard let c = d.claimed, let old = d.plugin, old.socket != nil, old.process != nil, old.state == .running, d.reload == nil else {
            return .failure(.init(ok: false, message: "\(d.address): its plugin is not running (\(d.state.rawValue)); nothing to reload"))
        }
        // The manifest as installed now: an upgrade may have changed it.
        let next = old.successor(manifest: catalog[old.name] ?? old.manifest)
        do { try launch(next, for: d, c, mode: .standby) } catch {
            Log.error("reload failed: could not start \(next.executable): \(error)", device: d.address, plugin: old.name)
            return .failure(.init(ok: false, message: "\(d.address): reload failed: could not start \(next.executable): \(error); "
                                  + "pid \(old.pid ?? 0) keeps running"))
        }
        Log.info("reload: new plugin \(next.unit ?? next.pid.map { "pid \($0)" } ?? "") starting in standby", device: d.address, plugin: old.name)
        let job = DeviceReload(device: d, old: old, next: next)
        d.successor = next
        d.reload = job
        return .success(job)
    }
}
