import FoundationEssentials
import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

extension Supervisor {
    /// Run the service until SIGTERM/SIGINT: one poll loop over signals, the
    /// control socket and its clients, the udev monitor, plugin sockets and
    /// pidfds, and device-request eventfds, with timers for the watchdog,
    /// plugin restarts, heartbeats and control operations. Nothing in it
    /// waits on a client or a plugin: whatever takes time is a state machine
    /// stepped here (ControlServer, DeviceReload, StatusOperation, StopOperation).
    public func run() throws {
        let signals = try SignalFD([SIGTERM, SIGINT, SIGHUP, SIGCHLD])
        // A client that hangs up early must not kill the service.
        signal(SIGPIPE, SIG_IGN)
        loadConfig()
        mkdir("/" + options.socketPath.split(separator: "/").dropLast().joined(separator: "/"), 0o755)
        let listener = try UnixSocket.listen(path: options.socketPath, mode: 0o600, backlog: 128)
        ControlServer.grantGroup(options.socketPath)
        let control = ControlServer(listener: listener)
        defer { control.closeAll(); listener.close(); unlink(options.socketPath) }
        var monitor: DeviceMonitor?
        do { monitor = try DeviceMonitor() } catch {
            Log.warning("no udev monitor (\(error)): devices added or removed later are not noticed")
        }
        restoreFromStore()
        reconcile()
        let watchdog = ServiceNotifier.watchdogInterval()
        var nextPing = monotonic()
        ServiceNotifier.ready(status: currentStatusLine())
        Log.notice("virtiod ready: control socket \(options.socketPath), \(devices.count) virtio device(s)")

        while true {
            let now = monotonic()
            if let watchdog, now >= nextPing {
                ServiceNotifier.watchdog()
                nextPing = now + watchdog / 2
            }
            restartDuePlugins()
            checkHeartbeats()
            stepReloads(now: now)
            control.tick(self, now: now)
            systemd.drain()
            let heartbeat = devices.values.contains { $0.plugin?.isRunning == true } ? monotonic() + 1 : nil
            let deadlines = [watchdog != nil ? nextPing : nil, nextRestart, heartbeat, control.nextDeadline,
                             devices.values.compactMap { $0.reload?.deadline }.min()].compactMap { $0 }
            let timeout = deadlines.min().map { Int32(max(0, min(60_000, ($0 - monotonic()) * 1000)).rounded(.up)) } ?? -1

            var watched: [(fd: FileDescriptor, write: Bool)] = [(signals.fd, false)] + control.pollSet
            if let monitor { watched.append((FileDescriptor(rawValue: monitor.fd), false)) }
            enum Source { case message(PluginProcess), exit(PluginProcess), request, endpoint(any Endpoint) }
            var owners: [CInt: (ManagedDevice, Source)] = [:]
            for d in devices.values {
                for p in d.processes where p.isRunning {
                    if let s = p.socket, !p.hungUp { watched.append((s.fd, false)); owners[s.fd.rawValue] = (d, .message(p)) }
                    if let e = p.process?.fd { watched.append((e, false)); owners[e.rawValue] = (d, .exit(p)) }
                }
                if let r = d.claimed?.request { watched.append((r.fd, false)); owners[r.fd.rawValue] = (d, .request) }
                for e in d.claimed?.endpoints ?? [] {
                    if let f = e.eventFD { watched.append((f, false)); owners[f.rawValue] = (d, .endpoint(e)) }
                }
            }
            for event in try Poll.wait(watched, timeoutMS: timeout) {
                let fd = event.fd
                if fd == signals.fd {
                    while let (sig, _) = try signals.next() {
                        switch sig {
                        case SIGTERM, SIGINT:
                            // A restart keeps the devices; a stop gives them back.
                            if sig == SIGTERM, FDStore.available, FDStore.pendingJob() == "restart" {
                                ServiceNotifier.send("STOPPING=1\nSTATUS=Restarting: devices stay claimed and running")
                                exitForRestart()
                                return
                            }
                            Log.notice("stopping: giving devices back to their kernel drivers")
                            ServiceNotifier.stopping()
                            shutdown()
                            return
                        case SIGHUP:
                            ServiceNotifier.reloading()
                            Log.notice("reloading configuration")
                            loadConfig()
                            reconcile()
                            ServiceNotifier.send("READY=1\nSTATUS=\(currentStatusLine())")
                        case SIGCHLD:
                            // Children (no systemd units) are followed by pidfd like units' processes.
                            for d in devices.values {
                                for p in d.processes where p.isRunning && p.hasExited { processEnded(d, p) }
                            }
                        default: break
                        }
                    }
                } else if control.owns(fd) {
                    control.handle(event, self)
                } else if let monitor, fd.rawValue == monitor.fd {
                    let events = monitor.dispatch()
                    if events.pciChanged { reconcile() }
                    for name in events.interfaces { interfaceAppeared(name) }
                } else if let (d, source) = owners[fd.rawValue] {
                    switch source {
                    case .request:
                        _ = try? d.claimed?.request?.consume()
                        Log.notice("the kernel asks for the device back (hot-unplug or unbind); releasing it", device: d.address)
                        d.heldBack = true
                        release(d, giveBack: false)
                    case .endpoint(let e):
                        endpointEvents(d, e)
                    case .message(let p):
                        guard p.socket?.fd == fd else { continue } // already let go this turn
                        pluginMessage(d, from: p)
                    case .exit(let p):
                        guard p.process?.fd == fd, p.isRunning else { continue }
                        lastMessages(d, from: p)
                        if p.isRunning, p.hasExited { processEnded(d, p) }
                    }
                }
            }
        }
    }

    /// Read what an exited plugin said last, up to its hang-up. A stopping
    /// plugin's hang-up changes nothing else and its closed socket stays
    /// readable: reading on until it is not once spun here until the
    /// watchdog killed virtiod.
    func lastMessages(_ d: ManagedDevice, from p: PluginProcess) {
        while !p.hungUp, p.isRunning, let s = p.socket, (try? Poll.readable([s.fd], timeoutMS: 0))?.isEmpty == false {
            pluginMessage(d, from: p)
        }
    }

    /// Deadlines of reloads in progress.
    func stepReloads(now: Double) {
        for d in devices.values { d.reload?.step(self, now: now) }
    }

    func currentStatusLine() -> String {
        let claimed = devices.values.filter { $0.claimed != nil }.count
        var s = "\(devices.count) virtio device(s), \(claimed) claimed"
        if let configError { s += "; config error: \(Log.quoted(configError, limit: 200))" }
        return s
    }
}
