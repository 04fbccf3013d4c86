import CVirtioShim
import Glibc

/// Plugins need no privilege once they hold their fds: everything they touch
/// (VFIO device, DMA memory, eventfds, endpoints) is an fd the supervisor
/// passed. Under systemd the plugin's unit already runs it as a dynamic user
/// with no capabilities; started by hand as root, it drops to nobody. Both
/// forbid regaining privilege. Fails closed: a plugin that cannot drop does
/// not run.
enum Privileges {
    static let nobody: uid_t = 65534

    /// Returns a description of what was done, for the log; throws if the
    /// process would keep privilege.
    static func drop() throws -> String {
        guard cvirtio_no_new_privs() == 0 else {
            throw PluginError("cannot set no-new-privileges: \(String(cString: strerror(errno))); refusing to run")
        }
        guard getuid() == 0 || geteuid() == 0 else { return "uid \(getuid()), no-new-privileges" }
        guard setgroups(0, nil) == 0, setgid(gid_t(nobody)) == 0, setuid(nobody) == 0 else {
            throw PluginError("cannot drop root to uid \(nobody): \(String(cString: strerror(errno))); refusing to run as root")
        }
        // setuid(2) from root must not be undoable.
        guard setuid(0) != 0, geteuid() == nobody else { throw PluginError("privilege drop did not hold; refusing to run") }
        return "nobody, no-new-privileges"
    }
}
