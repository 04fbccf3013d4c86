import CVirtioShim
import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodProtocol

/// The life of a plugin process: wait for `attach` on standard input, bring the device
/// up with the profile's features and queues (virtio 1.2 §3.1.1), report it,
/// then serve interrupts and supervisor messages until `stop` (reset the
/// device, exit 0) or until the supervisor goes away or SIGTERM comes (write
/// a hand-over record, exit 0, the device keeps running for a successor).
/// With `standby`/`adopt` it takes over a running device instead (hot reload,
/// restart of virtiod).
public enum PluginMain {
    /// The runtime's version (a plugin reports `PluginProfile.version`, which defaults to it).
    public static let version = "0.5.0"

    public static func run(_ profile: PluginProfile) -> Never {
        if CommandLine.arguments.contains("--describe") {
            // For `virtioctl plugins` when no process of this plugin runs.
            let d = PluginSelfDescription(name: profile.name, version: profile.version, stub: profile.stub,
                                          deviceType: profile.deviceType.rawValue)
            if let json = try? JSONEncoder().encode(d) { print(String(decoding: json, as: UTF8.self)) }
            exit(0)
        }
        let link = SupervisorLink(socket: UnixSocket(fd: FileDescriptor(rawValue: PluginProtocol.socketFD)))
        keepFreedMemory()
        do {
            let driver = try attach(profile, link: link)
            try driver.serve()
            exit(0)
        } catch {
            PluginLog.error("\(profile.name): \(error)")
            try? link.send(PluginMessage(kind: .error, message: "\(error)"))
            exit(1)
        }
    }

    /// A data path that allocates and frees large buffers per request (the
    /// 9p plugin's, when no DMA slot is free for a request's data) would have
    /// glibc give them back to the kernel on free (mmap above its threshold,
    /// heap trimmed past 128 KiB) and fault them in again next time. In the
    /// test VM half of the first 9p plugin's CPU time per 128 KiB request was
    /// system time; with this and fewer copies it fell from 2.9 to ~1 ms
    /// (the two were measured together). Keep up to 4 MiB of freed heap;
    /// blocks of 1 MiB or more still come from mmap.
    static func keepFreedMemory() {
        _ = cvirtio_malloc_keep(1 << 20, 4 << 20)
    }

    static func attach(_ profile: PluginProfile, link: SupervisorLink) throws -> DeviceDriver {
        let (info, fds) = try link.receiveAttach()
        try link.send(PluginMessage(kind: .hello, message: profile.version))
        guard info.typeID == profile.deviceType.rawValue else {
            for f in fds.values { try? f.close() }
            throw PluginError("\(profile.name) plugin cannot drive a \(info.type) device (type \(info.typeID))")
        }
        let device = try AttachedDevice(info: info, fds: fds, deviceType: profile.deviceType)
        let privileges = try Privileges.drop(ioFlusher: profile.ioFlusher)
        #if VIRTIOD_FAULTS
        Faults.afterAttach(device)
        #endif
        let driver = try DeviceDriver(profile: profile, device: device, link: link, privileges: privileges)
        switch info.mode ?? .fresh {
        case .fresh:
            try driver.bringUp()
            // Its first hand-over (a reload) then writes the record with warm code.
            HandoverRehearsal.run(driver)
        case .adopt:
            try driver.adopt(try handoverRecord(device))
        case .standby:
            // Hot reload: the old plugin still drives the device. Say we are
            // ready, then take over only when told; anything else means the
            // reload was called off, and we leave without touching the device.
            HandoverRehearsal.run(driver)
            try link.send(PluginMessage(kind: .ready))
            let wait = [link.fd] + (driver.signals.map { [$0.fd] } ?? [])
            while true {
                guard let ready = try Poll.readable(wait, timeoutMS: -1).first else { continue }
                let bytes = ready == link.fd ? try link.receive() : []
                guard !bytes.isEmpty, let m = try? PluginMessage.decode(bytes), m.kind == .resume || m.kind == .query else {
                    PluginLog.info("\(profile.name) \(info.address): reload called off; leaving without touching the device")
                    exit(0)
                }
                if m.kind == .resume { break }
                try link.send(PluginMessage(kind: .ready))
            }
            let resumed = monotonic()
            let record = try handoverRecord(device)
            try driver.adopt(record, timing: (resumed, monotonic()))
        }
        return driver
    }

    /// The record to take over from.
    static func handoverRecord(_ device: AttachedDevice) throws -> HandoverRecord {
        #if VIRTIOD_FAULTS
        if Faults.active == "refuse-handover" {
            throw PluginError("refusing the hand-over record (VIRTIOD_PLUGIN_FAULT=refuse-handover)")
        }
        #endif
        return try device.handover.load()
    }
}

#if VIRTIOD_FAULTS
/// Fault injection for the VM suite, compiled only into test builds
/// (`swift build -Xswiftc -DVIRTIOD_FAULTS`, made by `make vm-stage`):
/// release binaries have none of it. VIRTIOD_PLUGIN_FAULT selects one:
/// - `refuse-handover`: refuse the hand-over record (reload/rollback.sh);
/// - `truncate-memfd`: try to shrink the DMA and state memfds, as a hostile
///   plugin would, and log what the kernel said (security/plugin-boundary.sh).
enum Faults {
    static var active: String? { getenv("VIRTIOD_PLUGIN_FAULT").map { String(cString: $0) } }

    static func afterAttach(_ device: AttachedDevice) {
        guard active == "truncate-memfd" else { return }
        for (name, m) in [("dma", device.memory), ("state", device.stateMemory)] {
            let r = ftruncate(m.fd.rawValue, 0)
            PluginLog.warning("fault truncate-memfd: ftruncate(\(name), 0) = \(r)\(r == 0 ? "" : " (\(String(cString: strerror(errno))))")")
        }
    }
}
#endif
