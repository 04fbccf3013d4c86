import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// Endpoint `fuse`: a virtio 9P share mounted on this machine as a FUSE
/// filesystem. The supervisor opens /dev/fuse, has it mounted at the
/// device's `MountPoint=` (default /run/virtiod-9p/<mount tag>) by a helper
/// in the host's mount namespace (`ShareMounter`), and keeps the fd — in
/// systemd's fd store across restarts of virtiod — so the mount stays up
/// while plugins come and go: a reloaded or restarted plugin reads on from
/// a duplicate. Releasing the device (or stopping virtiod) unmounts it.
///
/// Options: allow_other (every user sees the share), default_permissions
/// (the kernel checks mode bits against the caller, as for a local disk),
/// nosuid, nodev; ro with `ReadOnly=yes`.
final class FUSEEndpoint: Endpoint {
    static let kind = "fuse"
    static let defaultDirectory = "/run/virtiod-9p"
    static var available: Bool { access("/dev/fuse", F_OK) == 0 }
    /// /dev/fuse reports POLLERR before the mount exists and after it is
    /// gone; systemd must not drop it for that.
    static let storeWithPolling = false

    struct Saved: Codable {
        var mountPoint: String
        var readOnly: Bool
        /// A plugin answered the kernel's INIT: later ones (after a crash)
        /// serve a live session, which sends no INIT again.
        var initialized: Bool? = nil
    }

    let address: String
    let fuse: FUSEDevice
    private(set) var saved: Saved
    private let state: EndpointState

    private init(address: String, fuse: FUSEDevice, saved: Saved, state: EndpointState) {
        self.address = address
        self.fuse = fuse
        self.saved = saved
        self.state = state
    }

    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64) -> Int { 1 }

    /// The device's mount tag (virtio 9P config: le16 tag_len, tag), if it is a usable file name.
    static func mountTag(_ transport: VirtioPCITransport) -> String? {
        guard transport.configSize > 2, let length = try? transport.readConfig(UInt16.self, at: 0), length > 0,
              let bytes = try? transport.readConfig(offset: 2, length: min(Int(length), transport.configSize - 2, 64)) else { return nil }
        return PTYEndpoint.linkName(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
    }

    static func create(for device: ClaimedDevice, rule: DeviceRule?) throws -> FUSEEndpoint {
        let tag = mountTag(device.transport)
        let path = rule?.mountPoint ?? "\(defaultDirectory)/\(tag ?? device.address)"
        let saved = Saved(mountPoint: path, readOnly: rule?.readOnly ?? false)
        let fd: FUSEDevice
        do { fd = try FUSEDevice.open() } catch {
            throw ClaimError.setup("cannot open /dev/fuse: \(error) (is the fuse module loaded?)")
        }
        do {
            let state = try EndpointState(name: "virtiod-fuse")
            try state.store(saved)
            try ShareMounter.shared.mount(fd, at: path, readOnly: saved.readOnly, source: "virtiod:\(tag ?? device.address)",
                                          address: device.address)
            Log.info("share \(tag ?? "(no tag)") mounted at \(path)" + (saved.readOnly ? " read-only" : ""), device: device.address)
            return FUSEEndpoint(address: device.address, fuse: fd, saved: saved, state: state)
        } catch {
            try? fd.fd.close()
            throw error
        }
    }

    static func restore(for device: ClaimedDevice, fds: [FileDescriptor], state: FileDescriptor?) throws -> FUSEEndpoint {
        guard fds.count == 1, let state else { throw ClaimError.setup("the fuse endpoint's fd or state is missing from the fd store") }
        let memory = try EndpointState(adopting: state)
        guard let saved = memory.load(Saved.self) else { throw ClaimError.setup("the fuse state in the fd store is unreadable") }
        return FUSEEndpoint(address: device.address, fuse: FUSEDevice(fds[0]), saved: saved, state: memory)
    }

    var fds: [FileDescriptor] { [fuse.fd] }
    var stateFD: FileDescriptor? { state.fd }
    var facts: [String: String] {
        ["mount_point": saved.mountPoint, "read_only": saved.readOnly ? "yes" : "no", "session": saved.initialized == true ? "live" : "new"]
    }

    func deviceReported(_ device: ClaimedDevice, config: [String: ConfigValue]) {
        guard saved.initialized != true, config["fuse"] == .text("serving") else { return }
        saved.initialized = true
        do { try state.store(saved) } catch {
            Log.warning("fuse: state for a restart of virtiod not kept: \(error)", device: address)
        }
    }
    var summary: String { saved.mountPoint }
    var details: [String: String] {
        ["mount_point": saved.mountPoint,
         "options": "allow_other,default_permissions,nosuid,nodev" + (saved.readOnly ? ",ro" : ""),
         "connected": connected ? "yes" : "no (unmounted)"]
    }

    /// The FUSE connection is up (POLLERR once the filesystem is gone).
    var connected: Bool { !fuse.poll(timeoutMS: 0).ended }

    func close() {
        if connected {
            if ShareMounter.shared.unmount(fuse, at: saved.mountPoint, address: address) {
                Log.info("\(saved.mountPoint) unmounted", device: address)
            }
        }
        try? fuse.fd.close()
    }
}
