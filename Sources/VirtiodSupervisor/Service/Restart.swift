import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodProtocol

/// virtiod surviving itself: on `systemctl restart` (or an upgrade, or a
/// crash and Restart=on-failure) the devices stay claimed and running. Every
/// fd a device needs is in systemd's fd store from the moment it is claimed
/// (`ClaimedDevice.storeFDs`); plugins write their hand-over record when they
/// get SIGTERM; the next virtiod takes the fds back and starts plugins that
/// adopt the running queues. A device without a record (its plugin was
/// killed outright) is reset and started afresh.
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
        for (slug, fds) in bySlug.sorted(by: { $0.key < $1.key }) {
            let names = fds.keys.map { "\(slug)/\($0)" }
            guard let f = functions.first(where: { ClaimedDevice.storeSlug($0.address) == slug }),
                  let type = f.typeID.flatMap({ DeviceType(rawValue: $0) }), let name = f.type else {
                Log.warning("fd store: device \(slug) is gone; dropping its \(fds.count) fd(s)")
                for fd in fds.values { try? fd.close() }
                FDStore.remove(names: names)
                continue
            }
            do {
                let c = try ClaimedDevice(restoring: f.address, type: type, fds: fds)
                let d = ManagedDevice(function: f)
                d.claimed = c
                d.attempted = true
                d.identity = identity(of: f, keeping: d.identity)
                d.rule = policy.rule(for: f, identity: d.identity)
                d.plugin = PluginProcess(name: name, executable: pluginPath(name))
                devices[f.address] = d
                Log.notice("taken back after a restart of virtiod (\(fds.count) fds from the store"
                    + (c.handover.isSaved ? "; its plugin left a hand-over record: no reset)" : "; no hand-over record: it will be reset)"),
                    device: f.address)
                startPlugin(d)
            } catch {
                Log.error("cannot take the device back from the fd store (\(error)); giving it back to the kernel", device: f.address)
                for fd in fds.values { try? fd.close() }
                FDStore.remove(names: names)
                try? binding.giveBack(f.address)
            }
        }
    }

    /// SIGTERM during `systemctl restart`: leave every device running.
    /// Plugins hand over (systemd signals the whole unit; they are told
    /// here too in case it does not) and exit; the fds stay in the store.
    func exitForRestart() {
        let running = devices.values.compactMap { d in d.plugin?.child.map { (d, $0) } }
        for (_, child) in running { kill(child.pid, SIGTERM) }
        let deadline = monotonic() + 5
        var left = running
        while !left.isEmpty, monotonic() < deadline {
            left = left.filter { (try? $0.1.poll()) == nil }
            if !left.isEmpty { usleep(10_000) }
        }
        for (d, child) in left {
            Log.warning("plugin did not hand over within 5 s; killed (the device will be reset)", device: d.address, plugin: d.plugin?.name)
            kill(child.pid, SIGKILL)
            _ = try? child.wait()
        }
        for d in devices.values {
            d.claimed?.leaveRunning = true
            d.plugin?.detach()
        }
        let saved = devices.values.filter { $0.claimed?.handover.isSaved == true }.count
        let claimed = devices.values.filter { $0.claimed != nil }.count
        Log.notice("restarting: \(claimed) device(s) stay claimed and running, \(saved) with a hand-over record")
    }
}
