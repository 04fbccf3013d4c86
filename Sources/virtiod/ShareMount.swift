import ArgumentParser
import CVirtioShim
import FoundationEssentials
import Glibc
import VirtioSystem

// The helpers virtiod starts (as transient units in the host's mount
// namespace) to mount and unmount a 9P share's FUSE filesystem: virtiod's
// own namespace is private and its system call filter has no mount(2).
// Not for people to run: the FUSE fd comes as standard input.

/// `virtiod mount-share`: mount the /dev/fuse fd on standard input.
struct MountShare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount-share", abstract: "(virtiod's helper) Mount the FUSE session on standard input at a path.",
        shouldDisplay: false)

    @Option(help: "Where to mount (made if missing).") var mountPoint: String
    @Option(help: "What the mount table shows as its source.") var source = "virtiod"
    @Flag(help: "Mount read-only.") var readOnly = false

    func run() throws {
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        // A share mounted by an earlier virtiod whose session is gone answers ENOTCONN: take it away first.
        var st = stat()
        if stat(mountPoint, &st) != 0, errno == ENOTCONN {
            print("\(mountPoint): a dead FUSE mount; detaching it")
            _ = umount2(mountPoint, Int32(MNT_DETACH))
        }
        let options = "fd=0,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,subtype=virtiod"
        var flags = UInt(MS_NOSUID | MS_NODEV | MS_NOATIME)
        if readOnly { flags |= UInt(MS_RDONLY) }
        guard mount(source, mountPoint, "fuse", flags, options) == 0 else {
            let e = errno
            throw ValidationError("mount \(mountPoint): \(String(cString: strerror(e)))")
        }
        print("mounted \(source) at \(mountPoint)" + (readOnly ? " read-only" : ""))
        raiseReadAhead()
    }

    /// A FUSE mount's read-ahead (`FUSEDevice.shareReadAheadKiB`) is its
    /// bdi's, named "major:minor" of the mount's device; not having it is no
    /// reason to fail the mount.
    func raiseReadAhead() {
        var st = stat()
        guard stat(mountPoint, &st) == 0 else { return }
        let path = "/sys/class/bdi/\(cvirtio_dev_major(st.st_dev)):\(cvirtio_dev_minor(st.st_dev))/read_ahead_kb"
        do {
            try "\(FUSEDevice.shareReadAheadKiB)\n".write(toFile: path, atomically: false, encoding: .utf8)
        } catch {
            print("read-ahead of \(mountPoint) left as it was (\(path): \(error))")
        }
    }
}

/// `virtiod unmount-share`: unmount a share; lazily if it is busy.
struct UnmountShare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount-share", abstract: "(virtiod's helper) Unmount a share (detach it if busy).",
        shouldDisplay: false)

    @Option(help: "The share's mount point.") var mountPoint: String

    func run() throws {
        if umount2(mountPoint, 0) == 0 {
            print("unmounted \(mountPoint)")
            return
        }
        let e = errno
        guard e == EBUSY else {
            throw ValidationError("umount \(mountPoint): \(String(cString: strerror(e)))")
        }
        guard umount2(mountPoint, Int32(MNT_DETACH)) == 0 else {
            let e2 = errno
            throw ValidationError("umount -l \(mountPoint): \(String(cString: strerror(e2)))")
        }
        print("\(mountPoint) is busy: detached (lazy unmount); the filesystem goes once its last user leaves")
    }
}
