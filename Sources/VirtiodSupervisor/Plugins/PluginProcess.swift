import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

/// One running (or restarting) plugin process for one device, as the
/// supervisor tracks it: its unit or child, pid, socket, last report,
/// restarts. Started by a `PluginLauncher`: as its own systemd unit where
/// systemd runs, as a child process otherwise.
final class PluginProcess {
    let manifest: PluginManifest
    var name: String { manifest.name }
    var executable: String { manifest.exec }
    var socket: UnixSocket?
    /// Its socket read as closed (the process is gone or going). Such a
    /// socket polls readable forever, so it is not polled or read again.
    var hungUp = false
    /// The process, once known (a unit's plugin says its pid in `hello`, which is checked).
    var process: ProcessHandle?
    /// Its transient unit, when started through systemd.
    var unit: String?
    /// Its child process, when spawned directly (reaped here).
    var child: ChildProcess?
    /// Numbers the processes of a device (unit names, fd store names).
    var generation = 0
    /// The name its socket is parked under in systemd's fd store, if it is.
    var storeName: String?
    var state: PluginState = .starting
    var startedAt: Double?
    var restarts = 0
    var lastExit: String?
    var report: DriverReport?
    /// The version the plugin said it is (`hello`).
    var version: String?
    /// The last status message answered a `query` (rather than being pushed).
    var lastStatusWasReply = false
    /// How many `query`s it has answered (status refreshes wait for the next one).
    var replies: UInt64 = 0
    /// Left running by an earlier virtiod and taken back (its first status says it answers).
    var reattached = false
    /// Monotonic time of the last message from the process (heartbeat).
    var lastHeard = 0.0
    /// Monotonic time of the last heartbeat query sent.
    var lastAsked = 0.0
    /// Monotonic time at which to start it again after a failure.
    var restartAt: Double?
    /// Monotonic times of recent unexpected exits (for back-off and giving up).
    var failures: [Double] = []
    /// How the current process took its device.
    var mode: AttachMode = .fresh
    /// Hot reloads done, and the pause of the last one (quiesce sent → successor running).
    var reloads = 0
    var lastReloadPauseMS: Double?
    /// What the last reload of the device did, as virtioctl was told.
    var lastReload: String?

    init(manifest: PluginManifest) {
        self.manifest = manifest
    }

    /// A successor for a reload: same manifest name (its current file), counters carried over.
    func successor(manifest: PluginManifest) -> PluginProcess {
        let next = PluginProcess(manifest: manifest)
        next.restarts = restarts
        next.failures = failures
        next.reloads = reloads
        next.lastReloadPauseMS = lastReloadPauseMS
        next.lastReload = lastReload
        next.generation = generation + 1
        return next
    }

    var pid: pid_t? { process?.pid ?? child?.pid }
    var isRunning: Bool { socket != nil }

    /// Start it with its end of a new socket as standard input and send
    /// `attach` with the named fds (in batches: no count is too many).
    func start(attach: AttachInfo, fds: [FileDescriptor], launcher: any PluginLauncher) throws {
        precondition(attach.fds.count == fds.count)
        let (mine, theirs) = try UnixSocket.seqpacketPair()
        defer { theirs.close() }
        do {
            try launcher.launch(self, address: attach.address, socket: theirs)
            let batches = stride(from: 0, to: fds.count, by: PluginProtocol.fdsPerMessage).map {
                Array(fds[$0..<min($0 + PluginProtocol.fdsPerMessage, fds.count)])
            }
            try mine.send(PluginMessage(kind: .attach, attach: attach).encoded(), fds: batches.first ?? [])
            for batch in batches.dropFirst() { try mine.send(PluginMessage(kind: .fds).encoded(), fds: batch) }
        } catch {
            mine.close()
            launcher.kill(self)
            forget(launcher: launcher)
            throw error
        }
        socket = mine
        hungUp = false
        mode = attach.mode ?? .fresh
        state = .starting
        startedAt = wallClock()
        lastHeard = monotonic()
        lastAsked = lastHeard
        report = nil
    }

    /// The plugin said who it is: follow that pid, if it really is this
    /// plugin's process (its unit's, or our child).
    func identify(pid: pid_t, launcher: any PluginLauncher) throws {
        guard process == nil else { return }
        guard launcher.owns(pid: pid, self) else {
            throw PluginError("says it is pid \(pid), which is not a process of \(unit ?? "its own")")
        }
        process = try ProcessHandle(pid: pid)
    }

    /// Whether the process has exited (known only once it is followed).
    var hasExited: Bool { process?.hasExited ?? false }

    /// Ask it to reset its device and exit (the caller waits, then `finish`es).
    func requestStop() {
        state = .stopping
        try? socket?.send(PluginMessage(kind: .stop).encoded())
    }

    /// Wait up to `timeout` seconds for it to exit, then kill it; note how it ended.
    func finish(timeout: Double, launcher: any PluginLauncher) {
        if let process, !process.waitForExit(timeoutMS: Int32(timeout * 1000)) {
            launcher.kill(self)
            _ = process.waitForExit(timeoutMS: 2000)
            lastExit = "killed after \(timeout) s without exiting"
        } else if process == nil, isRunning {
            // Never said who it is: nothing to wait on but its unit.
            launcher.kill(self)
            lastExit = "killed (it never reported its pid)"
        } else {
            lastExit = launcher.exitDescription(self) ?? "exited"
        }
        forget(launcher: launcher)
        state = .exited
    }

    /// Stop: `requestStop` + `finish`.
    func stop(timeout: Double = 3, launcher: any PluginLauncher) {
        guard isRunning else { return }
        requestStop()
        finish(timeout: timeout, launcher: launcher)
    }

    /// Kill it outright and forget it.
    func kill(launcher: any PluginLauncher) {
        launcher.kill(self)
        // SIGKILL takes effect at once; a moment for its unit to notice.
        _ = process?.waitForExit(timeoutMS: 500)
        forget(launcher: launcher)
    }

    /// Let go of everything (after it exited or was killed): socket, pidfd,
    /// a failed unit's record, a child's zombie.
    func forget(launcher: any PluginLauncher) {
        launcher.release(self)
        if let storeName { FDStore.remove(names: [storeName]) }
        storeName = nil
        socket?.close()
        socket = nil
        hungUp = false
        process?.close()
        process = nil
        child = nil
    }

    func processReport(now: Double) -> PluginProcessReport {
        var r = PluginProcessReport(name: name, executable: executable, pid: pid, state: state, startedAt: startedAt,
                                    uptimeSeconds: isRunning ? startedAt.map { max(0, wallClock() - $0) } : nil,
                                    restarts: restarts, lastExit: lastExit, reloads: reloads, lastReloadPauseMS: lastReloadPauseMS)
        r.unit = unit
        r.lastReload = lastReload
        r.version = report?.pluginVersion ?? version
        return r
    }
}

struct PluginError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
