import FoundationEssentials
import Glibc
import SystemPackage
import VirtioSystem

/// Mounts and unmounts FUSE filesystems where the whole machine sees them.
///
/// virtiod itself runs in a mount namespace of its own (PrivateMounts=,
/// ProtectSystem=strict: a mount made there propagates nowhere) and its
/// system call filter has no mount(2). So it opens /dev/fuse and hands the
/// fd, as standard input, to a short helper — `virtiod mount-share` /
/// `virtiod unmount-share` — that systemd starts as a transient unit in the
/// host's namespace with CAP_SYS_ADMIN alone. Mounted is known from the fd
/// itself: the kernel queues FUSE INIT on it the moment the mount exists;
/// unmounted likewise (the connection is aborted: POLLERR). Without systemd
/// (virtiod run by hand, in the host's namespace) the helper is a child.
struct ShareMounter {
    let systemd: SystemdManager?

    nonisolated(unsafe) static var shared = ShareMounter(systemd: nil)

    static let mountTimeout = 30.0
    static let unmountTimeout = 10.0

    /// This executable (the helper is a verb of it).
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/usr/bin/virtiod"
    }

    /// A running helper: a unit or a child.
    enum Helper {
        case unit(String)
        case child(ChildProcess)
    }

    private func start(_ verb: String, _ arguments: [String], stdin: FileDescriptor, address: String) throws -> Helper {
        let exe = Self.executable
        guard let systemd, SystemdManager.available else {
            return .child(try ChildProcess.spawn(exe, arguments: [verb] + arguments, fds: [0: stdin]))
        }
        var n = 0
        while true {
            let name = "virtiod-\(verb)-\(address)-\(n).service"
            do {
                try systemd.startTransientUnit(name, properties: [
                    ("Description", .string("virtiod \(verb) for \(address)")),
                    ("ExecStart", .exec(path: exe, argv: [exe, verb] + arguments)),
                    ("StandardInputFileDescriptor", .fd(stdin.rawValue)),
                    ("StandardOutput", .string("journal")),
                    ("StandardError", .string("journal")),
                    ("SyslogIdentifier", .string("virtiod-\(verb)")),
                    ("LogExtraFields", .byteStrings(["VIRTIO_DEVICE=\(address)"])),
                    ("Type", .string("oneshot")),
                    ("RemainAfterExit", .bool(false)),
                    ("CollectMode", .string("inactive")),
                    ("TimeoutStartUSec", .u64(UInt64(Self.mountTimeout * 1_000_000))),
                    // CAP_SYS_ADMIN (21): mount(2), umount2(2). Nothing else.
                    ("CapabilityBoundingSet", .u64(1 << 21)),
                    ("NoNewPrivileges", .bool(true)),
                ])
                return .unit(name)
            } catch let e as BusError where e.name == "org.freedesktop.systemd1.UnitExists" && n < 50 {
                n += 1
            }
        }
    }

    /// How `h` ended if it failed; nil while it runs or once it succeeded.
    private func failure(_ h: Helper) -> String? {
        switch h {
        case .unit(let name):
            guard let d = systemd?.exitDescription(unit: name), d.hasPrefix("exited with status ") || d.hasPrefix("killed"),
                  d != "exited with status 0" else { return nil }
            systemd?.resetFailed(unit: name)
            return "\(d) (journalctl -u \(name))"
        case .child(let c):
            guard let status = try? c.poll(), status != 0 else { return nil }
            return "exited with status \(status)"
        }
    }

    private func reap(_ h: Helper) {
        if case .child(let c) = h { _ = try? c.wait() }
    }

    /// Mount `fuse` (a fresh /dev/fuse fd) at `path`; returns once the
    /// kernel's INIT waits on the fd (the mount exists).
    func mount(_ fuse: FUSEDevice, at path: String, readOnly: Bool, source: String, address: String) throws {
        let h = try start("mount-share", ["--mount-point", path, "--source", source] + (readOnly ? ["--read-only"] : []),
                          stdin: fuse.fd, address: address)
        defer { reap(h) }
        let deadline = monotonic() + Self.mountTimeout
        while monotonic() < deadline {
            if fuse.poll(timeoutMS: 100).request { return }
            if let why = failure(h) { throw ClaimError.setup("mounting the share at \(path) failed: the helper \(why)") }
        }
        throw ClaimError.setup("mounting the share at \(path): no FUSE session within \(Int(Self.mountTimeout)) s")
    }

    /// Unmount `path` (lazily if it is busy; the helper says so in the
    /// journal); true once the filesystem is gone, false if it lingers
    /// (detached, busy) or the helper failed.
    @discardableResult
    func unmount(_ fuse: FUSEDevice, at path: String, address: String) -> Bool {
        let h: Helper
        do { h = try start("unmount-share", ["--mount-point", path], stdin: fuse.fd, address: address) } catch {
            Log.warning("cannot unmount \(path): \(error)", device: address)
            return false
        }
        defer { reap(h) }
        let deadline = monotonic() + Self.unmountTimeout
        while monotonic() < deadline {
            if fuse.poll(timeoutMS: 100).ended { return true }
            if let why = failure(h) {
                Log.warning("unmounting \(path): the helper \(why)", device: address)
                return false
            }
        }
        Log.notice("\(path) is detached but still in use: the filesystem goes once its last user leaves", device: address)
        return false
    }
}
