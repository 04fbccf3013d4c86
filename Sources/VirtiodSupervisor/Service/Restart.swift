import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodProtocol

/// virtiod surviving itself: on `systemctl restart` (or an upgrade, or a
/// crash and Restart=on-failure) the devices stay claimed and running. Every
/// fd a device needs — and the socket of each plugin process — is in
/// systemd's fd store from the moment it exists (`ClaimedDevice.storeFDs`,
/// `Supervisor.launch`). Plugins run in units of their own, so they keep
/// running while virtiod is away; the next virtiod takes the fds back and
/// talks to them again. A device whose plugin did not survive is adopted
/// from its hand-over record if it left one, else reset and started afresh.
extension Supervisor {
    /// Take back the devices an earlier virtiod left in the fd store.
    func restoreFromStore() {
        let stored = FDStore.takeAll()
        guard !stored.isEmpty else { return }
        var bySlug: [String: [String: FileDescriptor]] = [:]
        for (name, fd) in stored {
            guard let slash = name.firstIndex(of: "/") else {
                Log.warning("fd store: unexpected entry \(name); closing it")
                try? fd.close()
                continue
            }
            bySlug[String(name[..<slash]), default: [:]][String(name[name.index(after: slash)...])] = fd
        }
        let functions = (try? Discovery.virtioFunctions()) ?? []
        for (slug, all) in bySlug.sorted(by: { $0.key < $1.key }) {
            let names = all.keys.map { "\(slug)/\($0)" }
            var fds = all
            let sockets = fds.filter { $0.key.hasPrefix("plugin.") }
            var endpointFDs: [String: [(Int, FileDescriptor)]] = [:]
            var endpointState: [String: FileDescriptor] = [:]
            for (key, fd) in fds where key.hasPrefix(ClaimedDevice.endpointPrefix) {
                // "ep.<kind>.<index>", "ep.<kind>.state"
                let parts = key.dropFirst(ClaimedDevice.endpointPrefix.count).split(separator: ".")
                if parts.count == 2, let i = Int(parts[1]) {
                    endpointFDs[String(parts[0]), default: []].append((i, fd))
                } else if parts.count == 2, parts[1] == ClaimedDevice.endpointStateSuffix {
                    endpointState[String(parts[0])] = fd
                } else {
                    try? fd.close()
                }
            }
            fds = fds.filter { !$0.key.hasPrefix("plugin.") && !$0.key.hasPrefix(ClaimedDevice.endpointPrefix) }
            func closeAll() {
                for fd in all.values { try? fd.close() }
                FDStore.remove(names: names)
            }
            guard let f = functions.first(where: { ClaimedDevice.storeSlug($0.address) == slug }),
                  let type = f.typeID.flatMap({ DeviceType(rawValue: $0) }) else {
                Log.warning("fd store: device \(slug) is gone; dropping its \(all.count) fd(s)")
                closeAll()
                continue
            }
            let c: ClaimedDevice
            do { c = try ClaimedDevice(restoring: f.address, type: type, fds: fds) } catch {
                Log.error("cannot take the device back from the fd store (\(error)); giving it back to the kernel", device: f.address)
                endLeftPlugins(f.address, socketKeys: Array(sockets.keys))
                closeAll()
                try? binding.giveBack(f.address)
                continue
            }
            // From here `c` owns the device's own fds; endpoints take theirs one by one.
            do {
                // A kind may have only its state memfd stored (a console with no port yet).
                for kind in Set(endpointFDs.keys).union(endpointState.keys).sorted() {
                    guard let type = EndpointKinds.named(kind) else { throw ClaimError.setup("unknown endpoint kind \(kind) in the fd store") }
                    let list = endpointFDs[kind] ?? []
                    c.endpoints.append(try type.restore(for: c, fds: list.sorted { $0.0 < $1.0 }.map(\.1), state: endpointState[kind]))
                }
            } catch {
                Log.error("cannot take the device's endpoints back (\(error)); giving it back to the kernel", device: f.address)
                endLeftPlugins(f.address, socketKeys: Array(sockets.keys))
                let taken = Set(c.endpoints.flatMap { $0.fds + ($0.stateFD.map { [$0] } ?? []) }.map(\.rawValue))
                for list in endpointFDs.values { for (_, fd) in list where !taken.contains(fd.rawValue) { try? fd.close() } }
                for fd in endpointState.values where !taken.contains(fd.rawValue) { try? fd.close() }
                for fd in sockets.values { try? fd.close() }
                FDStore.remove(names: names)
                c.close()
                try? binding.giveBack(f.address)
                continue
            }
            let d = ManagedDevice(function: f)
            d.claimed = c
            d.attempted = true
            d.identity = identity(of: f, keeping: d.identity)
            d.rule = policy.rule(for: f, identity: d.identity)
            devices[f.address] = d
            if reattach(d, sockets: sockets) { continue }
            guard let manifest = try? manifest(for: d) else {
                d.state = .failed
                d.reason = "taken back after a restart of virtiod, but no plugin manifest drives it now"
                Log.error(d.reason!, device: f.address)
                continue
            }
            d.plugin = PluginProcess(manifest: manifest)
            Log.notice("taken back after a restart of virtiod (\(all.count) fds from the store"
                + (c.handover.isSaved ? "; its plugin left a hand-over record: no reset)" : "; no hand-over record: it will be reset)"),
                device: f.address)
            startPlugin(d)
        }
    }

    /// Plugins an earlier virtiod left running on a device this one cannot
    /// take back: they must be gone before the device is reset and given
    /// back — the kernel's driver and a plugin would drive the same queues.
    /// (Seen once: with a console's plugin still running, the write to
    /// drivers_probe never returned and QEMU logged "Guest moved used index";
    /// most likely the kernel's virtio_console waiting on a control message.)
    func endLeftPlugins(_ address: String, socketKeys: [String]) {
        guard launcher is UnitLauncher else { return }
        for key in socketKeys {
            let parts = key.split(separator: ".")
            guard parts.count == 3, let generation = Int(parts[2]) else { continue }
            let unit = UnitLauncher.unitName(plugin: String(parts[1]), address: address, generation: generation)
            guard let pid = systemd.mainPID(unit: unit), let process = try? ProcessHandle(pid: pid) else { continue }
            process.signal(SIGKILL)
            if !process.waitForExit(timeoutMS: 3000) {
                Log.warning("its plugin \(unit) (pid \(pid)) did not end within 3 s of SIGKILL", device: address)
            }
            process.close()
            systemd.resetFailed(unit: unit)
            Log.notice("its plugin \(unit) was stopped (pid \(pid)), so nothing drives the device any more", device: address)
        }
    }

    /// Talk again to the plugin process an earlier virtiod left running: its
    /// socket came back from the fd store ("plugin.<name>.<generation>"). It
    /// is asked for a status, which must come from a pid in its own unit. Older
    /// generations (a reload cut short) are let go: they leave without
    /// touching the device when their socket closes.
    func reattach(_ d: ManagedDevice, sockets: [String: FileDescriptor]) -> Bool {
        let parsed = sockets.compactMap { key, fd -> (name: String, generation: Int, key: String, fd: FileDescriptor)? in
            let parts = key.split(separator: ".")
            guard parts.count == 3, let g = Int(parts[2]) else { return nil }
            return (String(parts[1]), g, key, fd)
        }.sorted { $0.generation > $1.generation }
        let slug = ClaimedDevice.storeSlug(d.address)
        let live = parsed.first
        for (key, fd) in sockets where key != live?.key {
            try? fd.close()
            FDStore.remove(names: ["\(slug)/\(key)"])
        }
        guard let live else { return false }
        let manifest = catalog[live.name]
            ?? PluginManifest(name: live.name, exec: "(no manifest installed)", deviceTypes: [d.function.typeID ?? 0], path: "-")
        let p = PluginProcess(manifest: manifest)
        p.generation = live.generation
        p.socket = UnixSocket(fd: live.fd)
        p.storeName = "\(slug)/\(live.key)"
        if launcher is UnitLauncher { p.unit = UnitLauncher.unitName(plugin: live.name, address: d.address, generation: live.generation) }
        d.plugin = p
        // Not waited for here: the loop takes its answer like any status
        // (with its pid), a hang-up like any exit, silence like any missed
        // heartbeat.
        p.reattached = true
        p.startedAt = wallClock()
        p.lastHeard = monotonic()
        p.lastAsked = p.lastHeard
        d.state = .starting
        try? p.socket?.send(PluginMessage(kind: .query).encoded())
        Log.notice("taken back after a restart of virtiod: its plugin (\(p.unit ?? p.name)) is asked to report; no reset",
                   device: d.address, plugin: p.name)
        return true
    }

    /// SIGTERM during `systemctl restart`: leave every device running.
    /// Plugins in their own units just keep running (their sockets wait in
    /// the fd store). Plugins that are our children (no systemd units) are
    /// told to hand over, and exit.
    func exitForRestart() {
        let children = devices.values.compactMap { d in d.plugin.flatMap { $0.child != nil && $0.isRunning ? (d, $0) : nil } }
        for (_, p) in children { p.process?.signal(SIGTERM) }
        let deadline = monotonic() + 5
        for (d, p) in children where !(p.process?.waitForExit(timeoutMS: Int32(max(0, deadline - monotonic()) * 1000)) ?? true) {
            Log.warning("plugin did not hand over within 5 s; killed (the device will be reset)", device: d.address, plugin: p.name)
            p.process?.signal(SIGKILL)
        }
        for d in devices.values { d.claimed?.leaveRunning = true }
        let saved = devices.values.filter { $0.claimed?.handover.isSaved == true }.count
        let claimed = devices.values.filter { $0.claimed != nil }.count
        let running = devices.values.filter { $0.plugin?.unit != nil && $0.plugin?.isRunning == true }.count
        Log.notice("restarting: \(claimed) device(s) stay claimed and running; \(running) plugin unit(s) keep running, "
                   + "\(saved) device(s) with a hand-over record")
    }
}
