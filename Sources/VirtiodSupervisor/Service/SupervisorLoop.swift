import FoundationEssentials
import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

extension Supervisor {
    /// Run the service until SIGTERM/SIGINT: one poll loop over signals, the
    /// control socket, the udev monitor, plugin sockets and device-request
    /// eventfds, with timers for the watchdog and plugin restarts.
    public func run() throws {
        let signals = try SignalFD([SIGTERM, SIGINT, SIGHUP, SIGCHLD])
        // A client that hangs up early must not kill the service.
        signal(SIGPIPE, SIG_IGN)
        loadConfig()
        mkdir("/" + options.socketPath.split(separator: "/").dropLast().joined(separator: "/"), 0o755)
        let control = try UnixSocket.listen(path: options.socketPath, mode: 0o666)
        defer { control.close(); unlink(options.socketPath) }
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
            systemd.drain()
            let heartbeat = devices.values.contains { $0.plugin?.isRunning == true } ? monotonic() + 1 : nil
            let deadlines = [watchdog != nil ? nextPing : nil, nextRestart, heartbeat].compactMap { $0 }
            let timeout = deadlines.min().map { Int32(max(0, min(60_000, ($0 - monotonic()) * 1000)).rounded(.up)) } ?? -1

            var watched: [FileDescriptor] = [signals.fd, control.fd]
            if let monitor { watched.append(FileDescriptor(rawValue: monitor.fd)) }
            enum Source { case plugin, exit, request }
            var owners: [CInt: (ManagedDevice, Source)] = [:]
            for d in devices.values {
                if let s = d.plugin?.socket { watched.append(s.fd); owners[s.fd.rawValue] = (d, .plugin) }
                if d.plugin?.isRunning == true, let e = d.plugin?.process?.fd { watched.append(e); owners[e.rawValue] = (d, .exit) }
                if let r = d.claimed?.request { watched.append(r.fd); owners[r.fd.rawValue] = (d, .request) }
            }
            for fd in try Poll.readable(watched, timeoutMS: timeout) {
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
                            for d in exitedPlugins() { pluginEnded(d) }
                        default: break
                        }
                    }
                } else if fd == control.fd {
                    while let client = try control.accept() { serve(client) }
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
                    case .plugin:
                        pluginMessage(d)
                    case .exit:
                        // Read what it said last before handling the exit.
                        if let s = d.plugin?.socket, (try? Poll.readable([s.fd], timeoutMS: 0))?.isEmpty == false { pluginMessage(d) }
                        if d.plugin?.process?.fd == fd, d.plugin?.hasExited == true { pluginEnded(d) }
                    }
                }
            }
        }
    }

    func currentStatusLine() -> String {
        let claimed = devices.values.filter { $0.claimed != nil }.count
        var s = "\(devices.count) virtio device(s), \(claimed) claimed"
        if let configError { s += "; config error: \(configError)" }
        return s
    }

    /// One control connection: a request line in, a response line out.
    func serve(_ client: UnixSocket) {
        defer { client.close() }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client.fd.rawValue, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client.fd.rawValue, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let response: ControlResponse
        if let line = try? client.readLine(limit: 65536), !line.isEmpty {
            if let request = try? ControlWire.decoder.decode(ControlRequest.self, from: Data(line)) {
                let uid = (try? client.peerCredentials().uid) ?? UInt32.max
                response = handle(request, uid: uid)
            } else {
                response = .failure(ControlError(.badRequest, "not a version \(ControlProtocol.version) request: "
                                                 + String(decoding: line.prefix(200), as: UTF8.self)))
            }
        } else {
            return
        }
        guard var out = try? ControlWire.encoder.encode(response) else { return }
        out.append(UInt8(ascii: "\n"))
        try? client.writeAll(Array(out))
    }
}
