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
    static func drop(ioFlusher: Bool = false) throws -> String {
        // The flag first: it needs CAP_SYS_RESOURCE, which leaving root
        // (or the capability drop below) takes away. It stays set after.
        var flusher = ""
        if ioFlusher {
            if cvirtio_set_io_flusher() == 0 {
                flusher = ", I/O flusher"
            } else {
                PluginLog.notice("not an I/O flusher (\(String(cString: strerror(errno)))): the unit grants CAP_SYS_RESOURCE when the manifest says IOFlusher=yes")
            }
        }
        let identity = try dropIdentity()
        // A unit may grant a capability for the call above: none is kept.
        guard cvirtio_drop_capabilities() == 0 else {
            throw PluginError("cannot drop capabilities: \(String(cString: strerror(errno))); refusing to run")
        }
        return identity + flusher
    }

    private static func dropIdentity() throws -> String {
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
