import CVirtioShim
import Glibc

/// Plugins need no privilege once they hold their fds: everything they touch
/// (VFIO device, DMA memory, eventfds) is an fd the supervisor passed. Drop
/// to nobody and forbid regaining privilege.
enum Privileges {
    static let nobody: uid_t = 65534

    /// Returns a description of what was done, for the status report.
    static func drop() -> String {
        _ = cvirtio_no_new_privs()
        guard getuid() == 0 || geteuid() == 0 else { return "uid \(getuid()), no-new-privileges" }
        guard setgroups(0, nil) == 0, setgid(gid_t(nobody)) == 0, setuid(nobody) == 0 else {
            PluginLog.warning("could not drop to uid \(nobody): \(String(cString: strerror(errno)))")
            return "root (drop failed)"
        }
        return "nobody, no-new-privileges"
    }
}
