import CSystemd
import Glibc
import SystemPackage

/// systemd's file descriptor store (sd_pid_notify_with_fds(3) FDSTORE=1,
/// sd_listen_fds_with_names(3)): where virtiod parks every fd that must
/// outlive its own process — VFIO container/group/device, DMA and state
/// memfds, interrupt eventfds, TAP queues — so a restart (`systemctl
/// restart`, an upgrade, a crash) takes the devices back without a reset.
/// Needs `FileDescriptorStoreMax=` in the unit; without systemd every call
/// is a no-op.
public enum FDStore {
    /// Whether systemd's notify socket is there (run as a notify service).
    static var available: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Park `fd` under `name` (names may not contain ':'; systemd keeps its own duplicate).
    /// systemd drops a stored fd that reports POLLHUP unless `poll` is false
    /// (FDPOLL=0): a terminal's master does whenever nobody has the terminal open.
    static func store(_ fd: FileDescriptor, name: String, poll: Bool = true) throws {
        guard available else { return }
        var raw = fd.rawValue
        let r = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=\(name)" + (poll ? "" : "\nFDPOLL=0"), &raw, 1)
        guard r > 0 else { throw SystemCallErrorShim("FDSTORE \(name)", -r) }
    }

    /// Close systemd's copies of every fd stored under `name`, and wait
    /// until systemd has done so (a VFIO device is only let go once its
    /// last fd is closed).
    static func remove(names: [String]) {
        guard available, !names.isEmpty else { return }
        for name in names { _ = sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=\(name)") }
        _ = sd_notify_barrier(0, 5_000_000)
    }

    /// The fds systemd handed back at start, with their names (once; the
    /// environment is cleared). They stay in the store as well.
    static func takeAll() -> [(name: String, fd: FileDescriptor)] {
        // SAFETY: on success libsystemd hands over a malloc'd array of `n`
        // malloc'd C strings; each is copied into a String and freed once
        // below, and the array itself last.
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let n = sd_listen_fds_with_names(1, &names)
        guard n > 0 else { return [] }
        defer {
            if let names {
                for i in 0..<Int(n) { free(names[i]) }
                free(names)
            }
        }
        return (0..<Int(n)).map { i in
            let name = names?[i].map { String(cString: $0) } ?? "unknown"
            return (name, FileDescriptor(rawValue: SD_LISTEN_FDS_START + CInt(i)))
        }
    }

    /// What systemd is doing to the unit as SIGTERM arrives: "restart"
    /// (keep the devices: the next virtiod takes them over), "stop", or
    /// nil if that cannot be learnt (then virtiod assumes a stop).
    static func pendingJob() -> String? {
        var buffer = [CChar](repeating: 0, count: 64)
        let r = virtiod_unit_job_type(&buffer, buffer.count)
        guard r >= 0 else {
            Log.warning("cannot ask systemd what it is doing (\(String(cString: strerror(-r)))); treating SIGTERM as a stop")
            return nil
        }
        return String(cString: buffer)
    }
}

struct SystemCallErrorShim: Error, CustomStringConvertible {
    let description: String
    init(_ what: String, _ errno: CInt) { description = "\(what): \(String(cString: strerror(errno)))" }
}
