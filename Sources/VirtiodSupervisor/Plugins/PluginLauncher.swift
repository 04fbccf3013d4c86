import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

/// How plugin processes are started, signalled and cleaned up.
protocol PluginLauncher {
    /// Start `p`'s executable for device `address` with `socket` as its
    /// standard input; sets `p.unit` or `p.child`.
    func launch(_ p: PluginProcess, address: String, socket: UnixSocket) throws
    /// Whether `pid` really is `p`'s process.
    func owns(pid: pid_t, _ p: PluginProcess) -> Bool
    /// SIGKILL to all of `p`'s processes.
    func kill(_ p: PluginProcess)
    /// How its process ended, once it has.
    func exitDescription(_ p: PluginProcess) -> String?
    /// After it ended: drop what is left of it (a failed unit, a zombie).
    func release(_ p: PluginProcess)
}

/// Each plugin process is its own transient systemd unit (StartTransientUnit
/// over the manager's private socket), so that
///
/// - it is not in virtiod's cgroup: `systemctl restart virtiod` and a crash
///   of virtiod leave it running, and the next virtiod talks to it again
///   through its socket, which waits in virtiod's fd store;
/// - it gets its own dynamic uid, no capabilities, no-new-privileges, a
///   system call filter and memory and task limits from its manifest —
///   sandboxing systemd already does well;
/// - `systemctl status` and `journalctl -u` show it, with the device in the
///   description and VIRTIO_DEVICE=/VIRTIO_PLUGIN= on every journal line.
///
/// Transient rather than instances of a template unit: the plugin's socket
/// is handed over in the start call itself (StandardInputFileDescriptor=),
/// so nothing else has to find, authenticate or pass it, and the properties
/// come from the manifest. Names: virtiod-<plugin>-<address>-<generation>.service
/// in virtiod.slice; the generation changes with every process of the
/// device, so a successor can start beside the process it replaces.
struct UnitLauncher: PluginLauncher {
    let systemd: SystemdManager

    static let slice = "virtiod.slice"

    static func unitName(plugin: String, address: String, generation: Int) -> String {
        "virtiod-\(plugin)-\(address)-\(generation).service"
    }

    /// The dynamic user of a device's plugins ("virtiod-0000-00-03-0"): one
    /// uid per device, so plugins of different devices cannot touch each
    /// other; a successor shares its predecessor's.
    static func userName(address: String) -> String {
        "virtiod-" + String(address.map { $0.isHexDigit ? $0 : "-" })
    }

    func launch(_ p: PluginProcess, address: String, socket: UnixSocket) throws {
        var attempts = 0
        while true {
            let name = Self.unitName(plugin: p.name, address: address, generation: p.generation)
            do {
                try systemd.startTransientUnit(name, properties: Self.properties(p.manifest, address: address, socket: socket))
                p.unit = name
                return
            } catch let e as BusError where e.name == "org.freedesktop.systemd1.UnitExists" && attempts < 50 {
                // Left over from an earlier virtiod (failed, or still stopping): take the next number.
                attempts += 1
                p.generation += 1
            }
        }
    }

    /// The unit's properties: the plugin's command, its socket, and the
    /// sandbox (docs/plugin-guide.md "The unit"; `systemd-analyze security`
    /// of a running plugin unit is in the README).
    static func properties(_ m: PluginManifest, address: String, socket: UnixSocket) -> [(String, UnitValue)] {
        var p: [(String, UnitValue)] = [
            ("Description", .string("virtiod \(m.name) plugin for \(address)" + (m.description.map { " (\($0))" } ?? ""))),
            ("ExecStart", .exec(path: m.exec, argv: [m.exec, "--device", address])),
            ("StandardInputFileDescriptor", .fd(socket.fd.rawValue)),
            ("StandardOutput", .string("journal")),
            ("StandardError", .string("journal")),
            ("SyslogIdentifier", .string("virtiod-\(m.name)")),
            ("SyslogLevelPrefix", .bool(true)),
            ("LogExtraFields", .byteStrings(["VIRTIO_DEVICE=\(address)", "VIRTIO_PLUGIN=\(m.name)"])),
            ("Slice", .string(slice)),
            ("CollectMode", .string("inactive")),
            ("TimeoutStopUSec", .u64(5_000_000)),
            // Identity and privileges: a uid of its own, nothing to gain.
            ("DynamicUser", .bool(true)),
            ("User", .string(userName(address: address))),
            ("NoNewPrivileges", .bool(true)),
            ("CapabilityBoundingSet", .u64(0)),
            ("AmbientCapabilities", .u64(0)),
            ("PrivateUsers", .bool(true)),
            // Everything it touches comes as an fd: no devices, no writable
            // file system, no other processes, no IPC.
            ("PrivateDevices", .bool(true)),
            ("DevicePolicy", .string("closed")),
            ("PrivateTmp", .bool(true)),
            ("PrivateIPC", .bool(true)),
            ("PrivateMounts", .bool(true)),
            ("ProtectSystem", .string("strict")),
            ("ProtectHome", .string("yes")),
            ("ProtectProc", .string("invisible")),
            ("ProcSubset", .string(m.procSubset)),
            ("ProtectKernelTunables", .bool(true)),
            ("ProtectKernelModules", .bool(true)),
            ("ProtectKernelLogs", .bool(true)),
            ("ProtectControlGroups", .bool(true)),
            ("ProtectClock", .bool(true)),
            ("ProtectHostname", .bool(true)),
            ("RestrictNamespaces", .u64(0)),
            ("RestrictRealtime", .bool(true)),
            ("RestrictSUIDSGID", .bool(true)),
            ("LockPersonality", .bool(true)),
            ("MemoryDenyWriteExecute", .bool(true)),
            ("RemoveIPC", .bool(true)),
            ("KeyringMode", .string("private")),
            ("UMask", .u32(0o077)),
            ("PrivateNetwork", .bool(m.privateNetwork)),
            ("IPAddressDeny", .addresses([(2, [0, 0, 0, 0], 0), (10, [UInt8](repeating: 0, count: 16), 0)])),
            ("RestrictAddressFamilies", .list(allow: true, m.addressFamilies)),
            ("SystemCallArchitectures", .strings(["native"])),
            ("SystemCallFilter", .list(allow: true, ["@system-service"])),
            ("SystemCallFilter", .list(allow: false, ["@privileged", "@resources", "@mount", "@swap", "@reboot", "@raw-io",
                                                      "@module", "@obsolete", "@cpu-emulation", "@debug", "@clock"])),
            // A driver: its device waits on it. It gets the CPU before
            // ordinary services (a restarting virtiod, systemd's own work).
            ("Nice", .i32(-10)),
            ("MemoryMax", .u64(m.memoryMax)),
            ("TasksMax", .u64(m.tasksMax)),
        ]
        if m.ioFlusher {
            // CAP_SYS_RESOURCE (24) for PR_SET_IO_FLUSHER, then capset(2) to
            // drop it: capabilities of a user namespace would not count.
            let sysResource: UInt64 = 1 << 24
            p.removeAll { ["CapabilityBoundingSet", "AmbientCapabilities", "PrivateUsers"].contains($0.0) }
            p += [("CapabilityBoundingSet", .u64(sysResource)), ("AmbientCapabilities", .u64(sysResource)),
                  ("PrivateUsers", .bool(false)), ("SystemCallFilter", .list(allow: true, ["capset"]))]
        }
        if m.addressFamilies.isEmpty {
            // An empty allow list: no socket() at all (its sockets come from the supervisor).
            p.removeAll { $0.0 == "RestrictAddressFamilies" }
            p.append(("RestrictAddressFamilies", .list(allow: true, [])))
        }
        return p
    }

    func owns(pid: pid_t, _ p: PluginProcess) -> Bool {
        guard let unit = p.unit else { return false }
        return systemd.unit(ofPID: pid) == unit
    }

    func kill(_ p: PluginProcess) {
        if let unit = p.unit { try? systemd.kill(unit: unit, signal: SIGKILL) }
    }

    func exitDescription(_ p: PluginProcess) -> String? {
        p.unit.flatMap { systemd.exitDescription(unit: $0) }
    }

    func release(_ p: PluginProcess) {
        if let unit = p.unit { systemd.resetFailed(unit: unit) }
    }
}

/// Without systemd (virtiod run by hand): plugins are children, spawned with
/// the socket as standard input; they drop to `nobody` themselves.
struct DirectLauncher: PluginLauncher {
    func launch(_ p: PluginProcess, address: String, socket: UnixSocket) throws {
        let child = try ChildProcess.spawn(p.executable, arguments: ["--device", address],
                                           fds: [PluginProtocol.socketFD: socket.fd])
        p.child = child
        p.process = try? ProcessHandle(pid: child.pid)
    }

    func owns(pid: pid_t, _ p: PluginProcess) -> Bool { p.child?.pid == pid }

    func kill(_ p: PluginProcess) {
        if let process = p.process { process.signal(SIGKILL) } else if let child = p.child { Glibc.kill(child.pid, SIGKILL) }
    }

    func exitDescription(_ p: PluginProcess) -> String? {
        guard let child = p.child, let status = try? child.poll() else { return nil }
        p.child = nil
        return status > 128 ? "killed by signal \(status - 128)" : "exited with status \(status)"
    }

    func release(_ p: PluginProcess) {
        if let child = p.child {
            if (try? child.poll()) == nil { Glibc.kill(child.pid, SIGKILL); _ = try? child.wait() }
            p.child = nil
        }
    }
}
