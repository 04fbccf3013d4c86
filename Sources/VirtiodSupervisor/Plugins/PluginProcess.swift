import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

/// One running (or restarting) plugin process for one device, as the
/// supervisor tracks it: its pid, its socket, its last report, restarts.
final class PluginProcess {
    let name: String
    let executable: String
    var child: ChildProcess?
    var socket: UnixSocket?
    var state: PluginState = .starting
    var startedAt: Double?
    var restarts = 0
    var lastExit: String?
    var report: DriverReport?
    /// The last status message answered a `query` (rather than being pushed).
    var lastStatusWasReply = false
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

    init(name: String, executable: String) {
        self.name = name
        self.executable = executable
    }

    /// Spawn it with its end of a new socket on fd 3 and send `attach` with the fds.
    func start(attach: AttachInfo, fds: [FileDescriptor], address: String) throws {
        let (mine, theirs) = try UnixSocket.seqpacketPair()
        defer { theirs.close() }
        do {
            child = try ChildProcess.spawn(executable, arguments: ["--device", address],
                                           fds: [PluginProtocol.socketFD: theirs.fd])
            try mine.send(PluginMessage(kind: .attach, attach: attach).encoded(), fds: fds)
        } catch {
            mine.close()
            if let child { kill(child.pid, SIGKILL); _ = try? child.wait() }
            child = nil
            throw error
        }
        socket = mine
        mode = attach.mode ?? .fresh
        state = .starting
        startedAt = wallClock()
        lastHeard = monotonic()
        lastAsked = lastHeard
        report = nil
    }

    /// Ask it to reset its device and exit; wait up to `timeout` seconds, then SIGKILL.
    func stop(timeout: Double = 3) {
        guard let child else { return }
        state = .stopping
        try? socket?.send(PluginMessage(kind: .stop).encoded())
        var waited = 0.0
        var status = try? child.poll()
        while status == nil, waited < timeout {
            usleep(10_000)
            waited += 0.01
            status = try? child.poll()
        }
        if status == nil {
            kill(child.pid, SIGKILL)
            status = try? child.wait()
            lastExit = "killed after \(timeout) s without exiting"
        } else {
            lastExit = status.flatMap { $0 }.map(describe) ?? "exited"
        }
        detach()
        state = .exited
    }

    /// Forget the process (after it was reaped).
    func detach() {
        socket?.close()
        socket = nil
        child = nil
    }

    func describe(_ status: Int32) -> String {
        status > 128 ? "killed by signal \(status - 128)" : "exited with status \(status)"
    }

    func processReport(now: Double) -> PluginProcessReport {
        PluginProcessReport(name: name, executable: executable, pid: child?.pid, state: state, startedAt: startedAt,
                            uptimeSeconds: child != nil ? startedAt.map { max(0, wallClock() - $0) } : nil,
                            restarts: restarts, lastExit: lastExit, reloads: reloads, lastReloadPauseMS: lastReloadPauseMS)
    }
}
