import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// Endpoint `nbd`: the disk of a virtio-blk device (virtio 1.2 §5.2) as a
/// kernel block device /dev/nbdN, set up through the kernel's "nbd" generic
/// netlink family (not the ioctls: with those the device dies with the
/// process sitting in NBD_DO_IT). One stream socketpair per queue: the
/// kernel gets one end at CONNECT (one hardware queue per socket,
/// NBD_FLAG_CAN_MULTI_CONN), the plugin the other (`nbd.<i>`), and the
/// supervisor keeps a copy of the plugin's end — so a reload passes the same
/// connection to the successor and the kernel notices nothing.
///
/// CONNECT waits for the plugin's first report: the disk's serial (GET_ID,
/// which only a driver can ask) names the backend, `virtiod-SERIAL`, from
/// which the shipped udev rule makes /dev/disk/by-id/virtiod-SERIAL.
///
/// Timeouts: a request unanswered for `requestTimeout` is re-queued by the
/// kernel, never failed (timeout > 0 with one connection, or any timeout
/// with several, re-queues since 4.x); while no connection is alive new I/O
/// waits up to `deadConnectionTimeout` instead of failing. A plugin that
/// crashes takes the requests it read with it: the supervisor shuts its
/// copies down (the kernel marks the connections dead), gives the kernel
/// fresh socketpairs (RECONFIGURE) and the new plugin their other ends; the
/// lost requests are sent again on the new connections when they time out.
final class NBDEndpoint: Endpoint {
    static let kind = "nbd"
    /// Most connections (and request queues) per disk.
    static let maxQueues = 4
    static let requestTimeout: UInt64 = 8
    /// Largest request the kernel sends (max_sectors_kb): 8 of the block
    /// plugin's 64 KiB slots, so 8 such requests fill a queue's 64.
    static let maxRequestKiB = 512
    static let deadConnectionTimeout: UInt64 = 300

    /// The plugin's ends of the connections (the supervisor's copies).
    private(set) var sockets: [UnixSocket]
    /// The kernel's ends, until CONNECT or RECONFIGURE hands them over.
    private var kernelEnds: [UnixSocket]
    /// What a restart of virtiod needs to find the device again (`Persisted`).
    private let state: EndpointState
    private(set) var persisted: Persisted?
    /// How many connections the disk has (fixed at creation).
    let connections: Int
    /// A plugin has had the connections (one taken back after a restart of virtiod has).
    private var used: Bool

    struct Persisted: Codable {
        var index: Int
        var backend: String
        var sizeBytes: UInt64
        var blockSize: UInt64
        var flags: UInt64

        /// INDEX and BACKEND_IDENTIFIER: a device with a backend takes no RECONFIGURE without it.
        var identifying: NetlinkAttributes {
            var a = NetlinkAttributes()
            a.u32(NBDNetlink.attrIndex, UInt32(index))
            a.string(NBDNetlink.attrBackendIdentifier, backend)
            return a
        }
    }

    private init(sockets: [UnixSocket], kernelEnds: [UnixSocket], state: EndpointState, persisted: Persisted?) {
        used = persisted != nil
        connections = sockets.count
        self.sockets = sockets
        self.kernelEnds = kernelEnds
        self.state = state
        self.persisted = persisted
    }

    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64) -> Int {
        BlockDisk.plannedQueues(transport, offered: offered, limit: maxQueues)
    }

    static func pairs(_ count: Int) throws -> (ours: [UnixSocket], kernel: [UnixSocket]) {
        var ours: [UnixSocket] = [], kernel: [UnixSocket] = []
        do {
            for _ in 0..<count {
                let (a, b) = try UnixSocket.streamPair()
                ours.append(a)
                kernel.append(b)
            }
        } catch {
            for s in ours + kernel { try? s.fd.close() }
            throw error
        }
        return (ours, kernel)
    }

    static func create(for device: ClaimedDevice, rule: DeviceRule?) throws -> NBDEndpoint {
        // The module (nbds_max=0: CONNECT makes devices as needed) is loaded by
        // modprobe@nbd.service; fail here, with the reason, if it is not there.
        _ = try NBDNetlink()
        let (ours, kernel) = try pairs(plannedQueues(device.transport, offered: device.offeredFeatures))
        do {
            return NBDEndpoint(sockets: ours, kernelEnds: kernel, state: try EndpointState(name: "virtiod-nbd"), persisted: nil)
        } catch {
            for s in ours + kernel { try? s.fd.close() }
            throw error
        }
    }

    static func restore(for device: ClaimedDevice, fds: [FileDescriptor], state: FileDescriptor?) throws -> NBDEndpoint {
        guard let state else { throw ClaimError.setup("no nbd state in the fd store") }
        let memory = try EndpointState(adopting: state)
        guard let p = memory.load(Persisted.self) else {
            throw ClaimError.setup("the nbd device was not connected yet when virtiod stopped")
        }
        // The index must still be this disk's (a DISCONNECT elsewhere could have freed it).
        guard TextFile.read("/sys/block/nbd\(p.index)/backend") == p.backend else {
            throw ClaimError.setup("/dev/nbd\(p.index) is no longer \(p.backend)")
        }
        return NBDEndpoint(sockets: fds.map(UnixSocket.init), kernelEnds: [], state: memory, persisted: p)
    }

    var fds: [FileDescriptor] { sockets.map(\.fd) }
    var stateFD: FileDescriptor? { state.fd }
    var facts: [String: String] { ["connections": String(sockets.count)] }
    var name: String? { persisted.map { "nbd\($0.index)" } }
    var summary: String { persisted.map { "/dev/nbd\($0.index)" } ?? "nbd (connects at the plugin's first report)" }
    var details: [String: String] {
        var d = ["connections": String(sockets.count), "request_timeout_s": String(Self.requestTimeout),
                 "dead_connection_timeout_s": String(Self.deadConnectionTimeout)]
        if let p = persisted {
            d["device"] = "/dev/nbd\(p.index)"
            d["size_bytes"] = String(p.sizeBytes)
            d["block_size"] = String(p.blockSize)
            d["backend"] = p.backend
            d["by_id"] = "/dev/disk/by-id/\(p.backend)"
            d["read_only"] = p.flags & NBDNetlink.flagReadOnly != 0 ? "yes" : "no"
        }
        return d
    }

    // MARK: the kernel side

    /// What the device says now: size, block size, the server flags its
    /// negotiated features allow.
    private static func geometry(_ device: ClaimedDevice) throws -> (size: UInt64, blockSize: UInt64, flags: UInt64) {
        let disk = try BlockDisk.read(device)
        var flags = NBDNetlink.flagHasFlags | NBDNetlink.flagCanMultiConn
        if disk.readOnly { flags |= NBDNetlink.flagReadOnly }
        if disk.flush { flags |= NBDNetlink.flagSendFlush }
        if disk.discard { flags |= NBDNetlink.flagSendTrim }
        return (disk.sizeBytes, disk.blockSize, flags)
    }

    /// The plugin reported (its config and identity): connect the disk on
    /// the first report, follow a capacity change on later ones.
    func deviceReported(_ device: ClaimedDevice, config: [String: ConfigValue]) {
        do {
            if var p = persisted {
                let (size, _, _) = try Self.geometry(device)
                guard size != p.sizeBytes else { return }
                var a = p.identifying
                a.u64(NBDNetlink.attrSizeBytes, size)
                _ = try NBDNetlink().request(NBDNetlink.cmdReconfigure, a)
                Log.info("/dev/nbd\(p.index) resized from \(p.sizeBytes) to \(size) bytes", device: device.address)
                p.sizeBytes = size
                persist(p)
                return
            }
            guard !kernelEnds.isEmpty else { return }
            try connect(device, serial: BlockDisk.serial(config))
        } catch {
            Log.error("nbd: \(error)", device: device.address)
        }
    }

    private func connect(_ device: ClaimedDevice, serial: String?) throws {
        let (size, blockSize, flags) = try Self.geometry(device)
        let backend = BlockDisk.stableName(serial: serial, address: device.address)
        var a = NetlinkAttributes()
        a.u64(NBDNetlink.attrSizeBytes, size)
        a.u64(NBDNetlink.attrBlockSizeBytes, blockSize)
        a.u64(NBDNetlink.attrTimeout, Self.requestTimeout)
        a.u64(NBDNetlink.attrDeadConnTimeout, Self.deadConnectionTimeout)
        a.u64(NBDNetlink.attrServerFlags, flags)
        a.u64(NBDNetlink.attrClientFlags, NBDNetlink.clientDestroyOnDisconnect)
        a.string(NBDNetlink.attrBackendIdentifier, backend)
        a.nested(NBDNetlink.attrSockets, NBDNetlink.socketItems(kernelEnds))
        let reply = try NBDNetlink().request(NBDNetlink.cmdConnect, a)
        guard let i = reply[NBDNetlink.attrIndex], i.count >= 4 else { throw ClaimError.setup("CONNECT answered without an index") }
        let index = Int(NetlinkParser.le32(i, at: i.startIndex))
        for s in kernelEnds { try? s.fd.close() }
        kernelEnds = []
        persist(Persisted(index: index, backend: backend, sizeBytes: size, blockSize: blockSize, flags: flags))
        // nbd starts at 128 KiB per request: a 1 MiB read would be eight
        // round trips. Larger requests fit the plugin's slots (64 KiB each,
        // 64 per queue; a request bigger than the pool is refused).
        let path = "/sys/block/nbd\(index)/queue/max_sectors_kb"
        do { try TextFile.writeAttribute(path, String(Self.maxRequestKiB)) } catch {
            Log.warning("nbd: \(path) not raised to \(Self.maxRequestKiB): \(error)", device: device.address)
        }
        Log.info("disk exported as /dev/nbd\(index) (\(size) bytes, \(sockets.count) connection(s), backend \(backend)"
                 + (flags & NBDNetlink.flagReadOnly != 0 ? ", read-only" : "") + ")", device: device.address)
    }

    /// A fresh plugin comes (the last one died, or was stopped): what it
    /// read from the connections and never answered is lost with it. Shut
    /// our copies down (the kernel marks the connections dead), make fresh
    /// pairs, and hand the kernel its ends (RECONFIGURE replaces only dead
    /// connections, so wait for the kernel to have seen them die). The very
    /// first plugin finds the connections untouched.
    func beforeFreshPlugin(_ device: ClaimedDevice) throws -> Bool {
        guard used else {
            used = true
            return false
        }
        for s in sockets { s.shutdownBoth(); try? s.fd.close() }
        sockets = []
        for s in kernelEnds { try? s.fd.close() }
        kernelEnds = []
        guard let p = persisted else {
            (sockets, kernelEnds) = try Self.pairs(connections)
            return true
        }
        sockets = try reconfigure(p, count: connections)
        Log.info("/dev/nbd\(p.index): \(connections) fresh connection(s); requests the last plugin read are sent again when they time out",
                 device: device.address)
        return true
    }

    /// Hand the kernel `count` fresh connections for dead ones; our ends.
    ///
    /// RECONFIGURE puts each socket in the first dead slot and quietly
    /// ignores the rest while none is dead (the kernel may not have read
    /// the shutdown yet): a socket it did not take is seen by its peer
    /// end hanging up once our copy of the kernel end is closed. And a
    /// socket it took may still be shut down by the old connection's
    /// receive thread exiting late (6.1 marks whatever socket sits in its
    /// slot dead): it counts once it stayed up for two checks in a row.
    private func reconfigure(_ p: Persisted, count: Int) throws -> [UnixSocket] {
        var taken: [UnixSocket] = []
        var lastError: (any Error)?
        var stable = 0
        usleep(50_000)
        for _ in 0..<100 where stable < 2 {
            if taken.count < count {
                let (ours, kernel) = try Self.pairs(count - taken.count)
                var a = p.identifying
                a.nested(NBDNetlink.attrSockets, NBDNetlink.socketItems(kernel))
                do { _ = try NBDNetlink().request(NBDNetlink.cmdReconfigure, a) } catch { lastError = error }
                for s in kernel { try? s.fd.close() }
                for s in ours {
                    if s.peerClosed { try? s.fd.close() } else { taken.append(s) }
                }
            }
            usleep(50_000)
            let died = taken.filter(\.peerClosed)
            for s in died { try? s.fd.close() }
            taken.removeAll { s in died.contains { $0.fd == s.fd } }
            stable = taken.count == count && died.isEmpty ? stable + 1 : 0
        }
        guard taken.count == count else {
            for s in taken { try? s.fd.close() }
            throw ClaimError.setup("/dev/nbd\(p.index) took \(taken.count) of \(count) fresh connection(s)"
                                   + (lastError.map { ": \($0)" } ?? ""))
        }
        return taken
    }

    /// The plugin found connection `key` closed by the kernel (it gave up
    /// waiting for a reply there, re-sent the request on another connection
    /// and shut this one down): give the kernel a fresh one for the dead
    /// slot and the plugin its other end. The plugin's other connections
    /// are untouched meanwhile.
    func request(_ event: EndpointEvent, _ device: ClaimedDevice) -> (answer: EndpointEvent?, fd: FileDescriptor?) {
        let key = event.key
        func failed(_ why: String) -> (EndpointEvent?, FileDescriptor?) {
            Log.warning("nbd: connection \(key): \(why)", device: device.address)
            return (EndpointEvent(kind: Self.kind, action: .failed, key: key, facts: ["error": why]), nil)
        }
        guard event.action == .open else { return (nil, nil) }
        guard sockets.indices.contains(key) else { return failed("the disk has connections 0 to \(sockets.count - 1)") }
        guard let p = persisted else { return failed("the disk is not connected") }
        // Renewed already (the request crossed a reload: the successor came
        // with the old end): the plugin gets the live one.
        guard sockets[key].peerClosed else {
            return (EndpointEvent(kind: Self.kind, action: .opened, key: key, facts: ["fd": "attached"]), sockets[key].fd)
        }
        let fresh: UnixSocket
        do { fresh = try reconfigure(p, count: 1)[0] } catch { return failed("\(error)") }
        try? sockets[key].fd.close()
        sockets[key] = fresh
        Log.notice("/dev/nbd\(p.index): connection \(key) was closed by the kernel (a request timed out there); a fresh one replaces it",
                   device: device.address)
        return (EndpointEvent(kind: Self.kind, action: .opened, key: key, facts: ["fd": "attached"]), fresh.fd)
    }

    func close() {
        if let p = persisted {
            do { _ = try NBDNetlink().request(NBDNetlink.cmdDisconnect, p.identifying) } catch {
                Log.warning("nbd: DISCONNECT of /dev/nbd\(p.index): \(error)")
            }
        }
        for s in sockets + kernelEnds { try? s.fd.close() }
    }

    // MARK: the record a restart of virtiod reads

    private func persist(_ p: Persisted) {
        persisted = p
        do { try state.store(p) } catch { Log.warning("nbd: state for a restart of virtiod not kept: \(error)") }
    }
}

/// The kernel's "nbd" generic netlink family (include/uapi/linux/nbd-netlink.h)
/// and the server flags of the NBD protocol (include/uapi/linux/nbd.h).
struct NBDNetlink {
    static let cmdConnect: UInt8 = 1, cmdDisconnect: UInt8 = 2, cmdReconfigure: UInt8 = 3
    static let attrIndex: UInt16 = 1, attrSizeBytes: UInt16 = 2, attrBlockSizeBytes: UInt16 = 3, attrTimeout: UInt16 = 4
    static let attrServerFlags: UInt16 = 5, attrClientFlags: UInt16 = 6, attrSockets: UInt16 = 7
    static let attrDeadConnTimeout: UInt16 = 8, attrBackendIdentifier: UInt16 = 10
    static let sockItem: UInt16 = 1, sockFD: UInt16 = 1
    static let clientDestroyOnDisconnect: UInt64 = 1 << 0
    static let flagHasFlags: UInt64 = 1 << 0, flagReadOnly: UInt64 = 1 << 1, flagSendFlush: UInt64 = 1 << 2
    static let flagSendTrim: UInt64 = 1 << 5, flagCanMultiConn: UInt64 = 1 << 8

    let netlink: GenericNetlink

    init() throws {
        do { netlink = try GenericNetlink(family: "nbd") } catch {
            throw ClaimError.setup("the kernel's nbd module is not loaded (modprobe nbd nbds_max=0; virtiod.service wants modprobe@nbd.service): \(error)")
        }
    }

    func request(_ command: UInt8, _ attributes: NetlinkAttributes) throws -> [UInt16: ArraySlice<UInt8>] {
        try netlink.request(command, attributes)
    }

    /// NBD_ATTR_SOCKETS' items: one NBD_SOCK_ITEM { NBD_SOCK_FD } per socket.
    static func socketItems(_ sockets: [UnixSocket]) -> NetlinkAttributes {
        var items = NetlinkAttributes()
        for s in sockets {
            var item = NetlinkAttributes()
            item.u32(sockFD, UInt32(bitPattern: s.fd.rawValue))
            items.nested(sockItem, item)
        }
        return items
    }
}
