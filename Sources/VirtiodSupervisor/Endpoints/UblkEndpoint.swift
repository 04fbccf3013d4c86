import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// Endpoint `ublk`: the disk of a virtio-blk device (virtio 1.2 §5.2) as
/// /dev/ublkbN through the kernel's ublk driver (ublk_drv: Linux 6.0+, not
/// in Debian 12's stock kernel; Documentation/block/ublk.rst). No socket:
/// the kernel copies each request's data straight into the plugin's DMA
/// memory and puts the request in a descriptor the plugin reads; answers
/// go back as io_uring commands.
///
/// The supervisor makes the device (ADD_DEV: one hardware queue per device
/// queue, `depth` tags each, user recovery with reissue) and keeps no fd
/// of it: the kernel lets only one process hold /dev/ublkcN open, and a new
/// server may take over only once the last one's is closed. So each plugin
/// asks for it (`endpoint open`), gets the supervisor's freshly opened fd,
/// and the supervisor closes its copy. The first plugin's report that it
/// fetches on every queue starts the disk (SET_PARAMS, START_DEV). When a
/// plugin ends — crash, reload, stop — the kernel quiesces the disk: I/O
/// waits, requests the plugin had and never answered are issued again to
/// the next one. The next plugin's open starts a recovery
/// (START_USER_RECOVERY, refused while the last one's fd is still open:
/// the plugin asks again) and its report ends it (END_USER_RECOVERY).
final class UblkEndpoint: Endpoint {
    static let kind = "ublk"
    static let maxQueues = 4
    /// Tags (requests in flight) per queue: the block plugin's slots.
    static let depth = 32
    /// Largest request, one slot's data (the block plugin's 128 KiB for ublk).
    static let maxRequestBytes = 128 << 10
    /// The disk's request timeout (ms; the kernel's default is 30 s). ublk
    /// re-arms it while a server runs; once it has gone, a timeout is what
    /// quiesces a queue whose every tag the server had taken (no command of
    /// it left to cancel): the next plugin then recovers the disk. Seen in
    /// reloads under fio: a 30 s stall before this was lowered.
    static let ioTimeoutMS = 1000
    /// Where the disk's stable name waits for udev (60-virtiod-ublk.rules).
    static let namesDirectory = "/run/virtiod/ublk"

    static var available: Bool { UblkControl.available }
    static var requestedFDsStay: Bool { false }

    struct Persisted: Codable {
        var deviceID: UInt32
        var queues: Int
        /// START_DEV done: /dev/ublkbN exists.
        var started = false
        var stableName: String?
        var sizeBytes: UInt64 = 0
        var readOnly = false
        /// A plugin got /dev/ublkcN since the device was made or last recovered.
        var handedOut = false
    }

    private let state: EndpointState
    private(set) var persisted: Persisted
    /// The disk's size changed on the device and the kernel's ublk cannot follow (logged once).
    private var unfollowedSize: UInt64?

    private init(state: EndpointState, persisted: Persisted) {
        self.state = state
        self.persisted = persisted
    }

    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64) -> Int {
        BlockDisk.plannedQueues(transport, offered: offered, limit: maxQueues)
    }

    static func control() throws -> UblkControl {
        do { return try UblkControl() } catch {
            throw ClaimError.setup("the kernel's ublk driver is not there (\(UblkControl.path): \(error)); "
                                   + "it needs a kernel with ublk_drv (virtiod.service wants modprobe@ublk_drv.service), or Endpoint=nbd")
        }
    }

    /// ADD_DEV for `queues` queues (the kernel makes at most one per CPU):
    /// the device's number and how many queues it has.
    static func addDevice(queues: Int) throws -> (id: UInt32, queues: Int) {
        let wanted = UblkABI.DeviceInfo(queues: UInt16(queues), depth: UInt16(depth), maxIOBytes: UInt32(maxRequestBytes),
                                        deviceID: UInt32.max, flags: UblkABI.flagUserRecovery | UblkABI.flagUserRecoveryReissue)
        let granted = try control().add(wanted)
        guard granted.flags & UblkABI.flagUserRecoveryReissue != 0, granted.queues >= 1, Int(granted.queues) <= queues,
              Int(granted.depth) == depth else {
            try? control().delete(granted.deviceID)
            throw ClaimError.setup("ublk granted \(granted.queues) queue(s) of depth \(granted.depth), flags \(String(granted.flags, radix: 16)); "
                                   + "virtiod needs up to \(queues) of \(depth) with user recovery")
        }
        return (granted.deviceID, Int(granted.queues))
    }

    static func create(for device: ClaimedDevice, rule: DeviceRule?) throws -> UblkEndpoint {
        let queues = plannedQueues(device.transport, offered: device.offeredFeatures)
        let memory = try EndpointState(name: "virtiod-ublk")
        let (id, granted) = try addDevice(queues: queues)
        let e = UblkEndpoint(state: memory, persisted: Persisted(deviceID: id, queues: granted))
        e.persist()
        Log.info("ublk device \(id) made (\(granted) queue(s) of \(depth)); /dev/\(UblkControl.diskName(id)) appears once the plugin serves it",
                 device: device.address)
        return e
    }

    static func restore(for device: ClaimedDevice, fds: [FileDescriptor], state: FileDescriptor?) throws -> UblkEndpoint {
        guard let state else { throw ClaimError.setup("no ublk state in the fd store") }
        let memory = try EndpointState(adopting: state)
        guard let p = memory.load(Persisted.self) else { throw ClaimError.setup("the ublk state in the fd store is unreadable") }
        _ = try control().info(p.deviceID)
        for fd in fds { try? fd.close() }
        let e = UblkEndpoint(state: memory, persisted: p)
        e.writeStableName()
        return e
    }

    var fds: [FileDescriptor] { [] }
    var stateFD: FileDescriptor? { state.fd }
    var facts: [String: String] {
        ["device": String(persisted.deviceID), "queues": String(persisted.queues), "queue_depth": String(Self.depth),
         "max_request_bytes": String(Self.maxRequestBytes)]
    }
    var name: String? { persisted.started ? UblkControl.diskName(persisted.deviceID) : nil }
    var summary: String {
        persisted.started ? "/dev/\(UblkControl.diskName(persisted.deviceID))"
            : "ublk device \(persisted.deviceID) (starts once the plugin serves it)"
    }
    var details: [String: String] {
        var d = facts
        if persisted.started {
            d["device"] = "/dev/\(UblkControl.diskName(persisted.deviceID))"
            d["size_bytes"] = String(persisted.sizeBytes)
            d["read_only"] = persisted.readOnly ? "yes" : "no"
            if let n = persisted.stableName { d["by_id"] = "/dev/disk/by-id/\(n)" }
        }
        if let info = try? UblkControl().info(persisted.deviceID) {
            d["state"] = UblkABI.State(rawValue: info.state).map { "\($0)" } ?? String(info.state)
            if info.serverPID > 0 { d["server_pid"] = String(info.serverPID) }
        }
        if let size = unfollowedSize {
            d["size_not_followed"] = "\(size) bytes (ublk in this kernel cannot resize a started disk)"
        }
        return d
    }

    // MARK: the plugin's side

    /// A plugin asks for /dev/ublkcN: start a recovery if an earlier plugin
    /// served the disk, open it, hand it over (the plugin's alone). While
    /// the last plugin still holds it, the answer says to ask again.
    func request(_ event: EndpointEvent, _ device: ClaimedDevice) -> (answer: EndpointEvent?, fd: FileDescriptor?) {
        let id = persisted.deviceID
        func answer(_ action: EndpointEvent.Action, _ facts: [String: String]) -> EndpointEvent {
            EndpointEvent(kind: Self.kind, action: action, key: event.key, facts: facts)
        }
        func later(_ why: String) -> (EndpointEvent?, FileDescriptor?) {
            (answer(.failed, ["retry": "yes", "error": why]), nil)
        }
        guard event.action == .open, event.key == 0 else { return (nil, nil) }
        do {
            let control = try Self.control()
            let info = try control.info(id)
            switch UblkABI.State(rawValue: info.state) {
            case .live:
                return later("the last plugin still serves \(UblkControl.diskName(id))")
            case .quiesced:
                do { try control.startRecovery(id) } catch let e as UblkControl.CommandError where e.errno == .resourceBusy {
                    return later("the last plugin's /dev/ublkc\(id) is not closed yet")
                }
                Log.info("/dev/\(UblkControl.diskName(id)): recovery started; I/O waits for the new plugin", device: device.address)
            case .dead where persisted.handedOut && !persisted.started:
                // A plugin fetched and ended before the disk started: the
                // kernel will not take fetches for those tags again.
                try? control.delete(id)
                (persisted.deviceID, persisted.queues) = try Self.addDevice(queues: persisted.queues)
                Log.notice("ublk device \(id) was never started; device \(persisted.deviceID) replaces it", device: device.address)
            default:
                break
            }
            let path = UblkControl.serverPath(persisted.deviceID)
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(path, .readWrite, options: [.closeOnExec]) } catch Errno.resourceBusy {
                return later("\(path) is still open elsewhere")
            }
            persisted.handedOut = true
            persist()
            var facts = facts
            facts["fd"] = "attached"
            return (answer(.opened, facts), fd)
        } catch {
            Log.warning("ublk: \(error)", device: device.address)
            return (answer(.failed, ["error": "\(error)"]), nil)
        }
    }

    /// The plugin reported: once it fetches on every queue (`ublk` =
    /// `serving`), start the disk the first time, end a recovery later.
    func deviceReported(_ device: ClaimedDevice, config: [String: ConfigValue]) {
        guard case .text("serving") = config["ublk"], case .number(let pid) = config["ublk_server_pid"], pid > 0, pid < 1 << 31 else { return }
        let id = persisted.deviceID
        do {
            let control = try Self.control()
            let info = try control.info(id)
            switch UblkABI.State(rawValue: info.state) {
            case .dead where !persisted.started:
                // Requests no larger than one device request of the plugin's (seg_max × size_max may say less).
                var most = Self.maxRequestBytes
                if case .number(let n) = config["request_bytes"], n >= 4096, n < UInt64(most) { most = Int(n) / 4096 * 4096 }
                try start(control, device, server: Int32(pid), serial: BlockDisk.serial(config), maxRequestBytes: most)
            case .quiesced:
                try control.endRecovery(id, server: Int32(pid))
                Log.info("/dev/\(UblkControl.diskName(id)): served by pid \(pid) again; waiting I/O goes on", device: device.address)
            case .live:
                followSize(device)
            default:
                break
            }
        } catch {
            Log.error("ublk: \(error)", device: device.address)
        }
    }

    private func start(_ control: UblkControl, _ device: ClaimedDevice, server: Int32, serial: String?, maxRequestBytes: Int) throws {
        let disk = try BlockDisk.read(device)
        var p = UblkABI.Parameters(maxSectors: UInt32(maxRequestBytes / 512), sectors: disk.sectors)
        let shift = UInt8(disk.blockSize.trailingZeroBitCount)
        p.logicalBlockShift = shift
        p.physicalBlockShift = shift
        p.ioMinimumShift = shift
        p.ioOptimalShift = shift
        if disk.readOnly { p.attributes |= UblkABI.attrReadOnly }
        if disk.flush { p.attributes |= UblkABI.attrVolatileCache }
        if !disk.readOnly {
            p.maxDiscardSectors = disk.maxDiscardSectors
            p.maxWriteZeroesSectors = disk.maxWriteZeroesSectors
            p.discardGranularity = disk.discardGranularity
        }
        persisted.stableName = BlockDisk.stableName(serial: serial, address: device.address)
        persisted.sizeBytes = disk.sizeBytes
        persisted.readOnly = disk.readOnly
        writeStableName()
        try control.setParameters(persisted.deviceID, p)
        try control.start(persisted.deviceID, server: server)
        persisted.started = true
        persist()
        setIOTimeout(device)
        Log.info("disk exported as /dev/\(UblkControl.diskName(persisted.deviceID)) (\(disk.sizeBytes) bytes, \(persisted.queues) queue(s), "
                 + "\(persisted.stableName ?? "")" + (disk.readOnly ? ", read-only" : "") + ")", device: device.address)
    }

    /// ublk in 6.12 sets a disk's size at START_DEV only (UPDATE_SIZE was
    /// added upstream later): a device that grew is said so, once.
    private func followSize(_ device: ClaimedDevice) {
        guard let disk = try? BlockDisk.read(device), disk.sizeBytes != persisted.sizeBytes, unfollowedSize != disk.sizeBytes else { return }
        unfollowedSize = disk.sizeBytes
        Log.warning("/dev/\(UblkControl.diskName(persisted.deviceID)): the device is now \(disk.sizeBytes) bytes; ublk in this kernel "
                    + "cannot resize a started disk, so it stays \(persisted.sizeBytes) until the device is claimed again "
                    + "(Endpoint=nbd follows resizes)", device: device.address)
    }

    private func setIOTimeout(_ device: ClaimedDevice) {
        let path = "/sys/block/\(UblkControl.diskName(persisted.deviceID))/queue/io_timeout"
        do { try TextFile.writeAttribute(path, String(Self.ioTimeoutMS)) } catch {
            Log.warning("ublk: \(path) not set to \(Self.ioTimeoutMS) ms: \(error); a queue the last plugin held entirely waits "
                        + "for the kernel's default timeout after a reload", device: device.address)
        }
    }

    /// The stable name for the udev rule: /run/virtiod/ublk/ublkbN holds "virtiod-SERIAL".
    private func writeStableName() {
        guard let n = persisted.stableName else { return }
        mkdir(Self.namesDirectory, 0o755)
        try? TextFile.writeAtomically(n + "\n", to: "\(Self.namesDirectory)/\(UblkControl.diskName(persisted.deviceID))")
    }

    func close() {
        let id = persisted.deviceID
        if let control = try? Self.control() {
            if persisted.started {
                do { try control.stop(id) } catch { Log.warning("ublk: STOP_DEV of \(UblkControl.diskName(id)): \(error)") }
            }
            do { try control.delete(id) } catch { Log.warning("ublk: DEL_DEV of device \(id): \(error)") }
        }
        unlink("\(Self.namesDirectory)/\(UblkControl.diskName(id))")
    }

    /// Keep `persisted` for a restart of virtiod.
    private func persist() {
        do { try state.store(persisted) } catch { Log.warning("ublk: state for a restart of virtiod not kept: \(error)") }
    }
}
