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
/// the successor refuses the record or dies, the old one resumes: a roll-back.
/// docs/architecture.md "Hand-over" has the sequence.
extension Supervisor {
    static let reloadReadyTimeout = 20.0
    static let quiesceTimeout = 5.0
    static let resumeTimeout = 10.0

    struct ReloadResult {
        var ok: Bool
        var message: String
    }

    func reload(_ d: ManagedDevice) -> ReloadResult {
        guard let c = d.claimed, let old = d.plugin, let oldSocket = old.socket, let oldProcess = old.process,
              old.state == .running else {
            return ReloadResult(ok: false, message: "\(d.address): its plugin is not running (\(d.state.rawValue)); nothing to reload")
        }
        let name = old.name
        // The manifest as installed now: an upgrade may have changed it.
        let next = old.successor(manifest: catalog[name] ?? old.manifest)
        do { try launch(next, for: d, c, mode: .standby) } catch {
            return fail(d, "could not start \(next.executable): \(error); pid \(oldProcess.pid) keeps running")
        }
        Log.info("reload: new plugin \(next.unit ?? next.pid.map { "pid \($0)" } ?? "") starting in standby", device: d.address, plugin: name)

        // 1. The successor maps everything while the old process still runs.
        if case .failure(let why) = awaitMessage(next, [.ready], timeout: Self.reloadReadyTimeout, device: d.address) {
            abandon(next)
            return fail(d, "the new \(name) plugin failed before taking over (\(why)); rolled back: pid \(oldProcess.pid) keeps running, traffic was not paused")
        }
        let newPID = next.pid ?? 0

        // 2. Quiesce the old one: it stops, writes its record, waits.
        let quiesceSent = monotonic()
        try? oldSocket.send(PluginMessage(kind: .quiesce).encoded())
        if case .failure(let why) = awaitMessage(old, [.quiesced], timeout: Self.quiesceTimeout, device: d.address) {
            abandon(next)
            if !oldProcess.hasExited, old.socket != nil, !c.handover.isSaved {
                return fail(d, "pid \(oldProcess.pid) could not hand over (\(why)); rolled back: it keeps running")
            }
            old.kill(launcher: launcher)
            pluginFailed(d, why: "plugin did not quiesce for a reload (\(why)); killed")
            return ReloadResult(ok: false, message: "\(d.address): pid \(oldProcess.pid) did not quiesce (\(why)); it was killed and the device is reset and restarted")
        }
        let quiesced = monotonic()

        // 3. The successor takes over from the record.
        try? next.socket?.send(PluginMessage(kind: .resume).encoded())
        switch awaitMessage(next, [.status], timeout: Self.resumeTimeout, device: d.address) {
        case .failure(let why):
            abandon(next)
            guard c.handover.isSaved, old.socket != nil else {
                // It took over and then died: the old state is stale now.
                old.kill(launcher: launcher)
                pluginFailed(d, why: "the new plugin died after taking over (\(why))")
                return ReloadResult(ok: false, message: "\(d.address): the new \(name) plugin died after taking over (\(why)); the device is reset and restarted")
            }
            try? oldSocket.send(PluginMessage(kind: .resume).encoded())
            return fail(d, "the new \(name) plugin refused the hand-over (\(why)); rolled back: pid \(oldProcess.pid) continues")
        case .success(let m):
            next.report = m.status
            next.state = .running
        }
        let running = monotonic()

        // 4. Retire the old process; it leaves without touching the device.
        try? oldSocket.send(PluginMessage(kind: .exit).encoded())
        old.state = .stopping
        old.finish(timeout: 3, launcher: launcher)
        next.reloads += 1
        next.lastReloadPauseMS = (running - quiesceSent) * 1000
        next.lastHeard = monotonic()
        d.plugin = next
        d.state = .running
        d.reason = nil
        func ms(_ seconds: Double) -> String { "\((seconds * 10_000).rounded() / 10) ms" }
        let message = "\(d.address): \(name) reloaded without a device reset: pid \(oldProcess.pid) → \(newPID), "
            + "pause \(ms(running - quiesceSent)) (quiesce \(ms(quiesced - quiesceSent)))"
        Log.notice(message, device: d.address, plugin: name)
        updateStatus()
        return ReloadResult(ok: true, message: message)
    }

    private func fail(_ d: ManagedDevice, _ why: String) -> ReloadResult {
        Log.error("reload failed: \(why)", device: d.address, plugin: d.plugin?.name)
        return ReloadResult(ok: false, message: "\(d.address): reload failed: \(why)")
    }

    /// Kill a successor that will not take over (it has not touched the device).
    private func abandon(_ p: PluginProcess) {
        p.kill(launcher: launcher)
    }

    /// The next message of one of `kinds` from `p`, or why none came: an
    /// `error` message, a hang-up, an exit, or the timeout. Status pushes on
    /// the way are kept as the latest report.
    func awaitMessage(_ p: PluginProcess, _ kinds: Set<PluginMessage.Kind>, timeout: Double,
                      device: String) -> Result<PluginMessage, ReloadFailure> {
        let deadline = monotonic() + timeout
        while let socket = p.socket {
            let left = deadline - monotonic()
            guard left > 0 else { return .failure(ReloadFailure("no answer within \(Int(timeout)) s")) }
            let watched = [socket.fd] + (p.process.map { [$0.fd] } ?? [])
            guard let ready = try? Poll.readable(watched, timeoutMS: Int32(left * 1000) + 1), !ready.isEmpty else { continue }
            if !ready.contains(socket.fd) {
                // Exited; whatever it sent before is still worth reading first.
                guard let more = try? Poll.readable([socket.fd], timeoutMS: 0), !more.isEmpty else {
                    return .failure(ReloadFailure(launcher.exitDescription(p) ?? "exited"))
                }
            }
            guard let m = receive(p, device: device) else {
                _ = p.process?.waitForExit(timeoutMS: 1000)
                return .failure(ReloadFailure(launcher.exitDescription(p) ?? "closed its socket"))
            }
            if kinds.contains(m.kind) { return .success(m) }
            if m.kind == .error { return .failure(ReloadFailure(m.message ?? "error")) }
            if m.kind == .status { p.report = m.status }
        }
        return .failure(ReloadFailure("not running"))
    }
}

struct ReloadFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
