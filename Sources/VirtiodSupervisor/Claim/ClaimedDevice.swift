import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// Everything the supervisor holds for a device it claimed: the VFIO
/// container, group and device fds, the DMA memfd mapped for the IOMMU, the
/// MSI-X eventfds and the device-request eventfd. These outlive any plugin
/// (the kernel resets a VFIO device when its last fd closes); plugins get
/// duplicates. `close()` gives them all up in the safe order.
public final class ClaimedDevice {
    public static let iovaBase: UInt64 = 0x1_0000_0000
    public static let defaultDMASize = 4 << 20
    /// net, per queue pair: rings, 96 transmit buffers of 64 KiB (TSO) and
    /// 256 page-sized receive buffers, rounded up.
    public static let netDMASizePerPair = 8 << 20

    public let address: String
    public let type: DeviceType
    let container: VFIOContainer
    let group: VFIOGroup
    public let vfio: VFIODevice
    public let transport: VirtioPCITransport
    public let memory: SharedMemory
    /// The hand-over area (virtiod's own memfd, not DMA-mapped): where a
    /// plugin that stops without a reset leaves its record for the next.
    public let stateMemory: SharedMemory
    public let handover: HandoverArea
    public static let stateSize = 1 << 20
    public let vectors: [EventFD]
    /// The INTx eventfd of a device without MSI-X.
    public let intx: EventFD?
    /// Signalled by vfio-pci when the kernel wants the device back (hot-unplug).
    public let request: EventFD?
    public let offeredFeatures: UInt64
    /// net: the TAP interface for the device (the supervisor holds it so it
    /// survives plugin restarts; closing it removes the interface).
    public var tap: TAPInterface? { taps.first }
    /// All queues of the TAP (IFF_MULTI_QUEUE when the device has several pairs).
    public private(set) var taps: [TAPInterface] = []
    private var tapMAC: [UInt8]?
    /// Most queue pairs virtiod uses per NIC.
    public static let maxQueuePairs = 8

    /// Set the TAP's MAC address to the device's again (after udev changed it).
    func applyTAPAddress() throws {
        if let tap, let tapMAC { try tap.setMACAddress(tapMAC) }
    }
    private var closed = false

    /// Open the device through VFIO (already bound to vfio-pci), check it is
    /// a device virtiod can drive safely, reset it and set up DMA and MSI-X.
    init(address: String, type: DeviceType, iommuGroup: Int, checks: ClaimChecks,
         dmaSize: Int = ClaimedDevice.defaultDMASize) throws {
        self.address = address
        self.type = type
        container = try VFIOContainer()
        group = try Self.openGroup(iommuGroup)
        try group.attach(to: container)
        try container.setIOMMU()
        vfio = VFIODevice(fd: try group.device(address: address))
        do {
            transport = try VirtioPCITransport(vfio: vfio, deviceType: type)
            offeredFeatures = transport.readDeviceFeatures()
            if let refusal = checks.accessPlatform(offered: offeredFeatures, address: address) {
                throw ClaimError.refused(refusal)
            }
            // The device may hold state from an earlier driver: reset before DMA is possible.
            try transport.reset()
            var size = dmaSize
            if type == .network { size = max(size, Self.netDMASizePerPair * Self.queuePairs(type, offeredFeatures, transport) + (1 << 20)) }
            memory = try SharedMemory(name: "virtiod-dma-\(address)", size: size)
            stateMemory = try SharedMemory(name: "virtiod-state-\(address)", size: Self.stateSize)
            handover = HandoverArea(region: stateMemory.region(deviceBase: 0))
            try container.mapDMA(vaddr: memory.base, iova: Self.iovaBase, size: size)
            try vfio.enableBusMaster()
            let table = try vfio.msixVectorCount()
            // Every vector of the table (up to 65: config + 64 queues). Not
            // sized by num_queues: QEMU's virtio-net changes that with the
            // negotiated features (MQ), which happens later, in the plugin.
            let count = min(table, 65)
            vectors = try (0..<count).map { _ in try EventFD() }
            if count > 0 {
                try vfio.enableMSIX(vectors)
                intx = nil
            } else {
                let e = try EventFD()
                try vfio.enableINTx(e)
                intx = e
            }
            let req = try? EventFD()
            if let req, (try? vfio.enableRequestIRQ(req)) != nil { request = req } else {
                req?.close()
                request = nil
            }
        } catch {
            try? vfio.fd.close()
            throw error
        }
    }

    // MARK: across restarts of virtiod (systemd's fd store)

    /// Prefix of this device's fd names in the store ("0000-00-03.0"; ':' is not allowed there).
    static func storeSlug(_ address: String) -> String { String(address.map { $0 == ":" ? "-" : $0 }) }

    /// Every fd the device needs to survive a restart of virtiod, named.
    var storeEntries: [(name: String, fd: FileDescriptor)] {
        let slug = Self.storeSlug(address)
        var e: [(String, FileDescriptor)] = [("container", container.fd), ("group.\(group.number)", group.fd),
                                              ("device", vfio.fd), ("dma", memory.fd), ("state", stateMemory.fd)]
        e += vectors.enumerated().map { ("msix.\($0)", $1.fd) }
        if let intx { e.append(("intx", intx.fd)) }
        if let request { e.append(("req", request.fd)) }
        e += taps.enumerated().map { ("tap.\($0)", $1.fd) }
        return e.map { ("\(slug)/\($0.0)", $0.1) }
    }

    /// Park every fd of the device in the store.
    func storeFDs() {
        guard FDStore.available else { return }
        do {
            for (name, fd) in storeEntries { try FDStore.store(fd, name: name) }
        } catch {
            Log.warning("fd store: \(error); a restart of virtiod will reset this device", device: address)
        }
    }

    /// Take the store's copies out (before the device is given back).
    func removeStoredFDs() { FDStore.remove(names: storeEntries.map(\.name)) }

    /// Take back a device an earlier virtiod claimed, from its stored fds
    /// (keys without the slug): nothing is reset or reprogrammed — the IOMMU
    /// mapping, MSI-X eventfds and bus mastering are as they were left, and
    /// the plugin adopts the running queues from the hand-over record.
    ///
    /// Everything that can fail comes before anything takes an fd: when it
    /// throws, the caller still owns every fd (and closes them); when it
    /// returns, this object owns the ones it knows.
    init(restoring address: String, type: DeviceType, fds: [String: FileDescriptor]) throws {
        func need(_ key: String) throws -> FileDescriptor {
            guard let fd = fds[key] else { throw ClaimError.setup("fd store holds no \(key) fd for \(address)") }
            return fd
        }
        guard let groupKey = fds.keys.first(where: { $0.hasPrefix("group.") }), let number = Int(groupKey.dropFirst(6)) else {
            throw ClaimError.setup("fd store holds no VFIO group fd for \(address)")
        }
        func size(_ fd: FileDescriptor) -> Int {
            var st = stat()
            return fstat(fd.rawValue, &st) == 0 ? Int(st.st_size) : 0
        }
        let containerFD = try need("container"), deviceFD = try need("device")
        let dma = try need("dma"), state = try need("state")
        /// "msix.0", "msix.1", … in index order.
        func indexed(_ prefix: String) -> [FileDescriptor] {
            var found: [(Int, FileDescriptor)] = []
            for (key, fd) in fds where key.hasPrefix(prefix) {
                if let i = Int(key.dropFirst(prefix.count)) { found.append((i, fd)) }
            }
            return found.sorted { $0.0 < $1.0 }.map(\.1)
        }
        let tapFDs = indexed("tap.")
        let tapName = try tapFDs.first.map { try TAPInterface.name(of: $0) }
        // These own no fd (the memfds are mapped without taking them).
        let vfio = VFIODevice(fd: deviceFD)
        let transport = try VirtioPCITransport(vfio: vfio, deviceType: type)
        let memory = try SharedMemory(mapping: dma, size: size(dma), ownsFD: false)
        let stateMemory = try SharedMemory(mapping: state, size: size(state), ownsFD: false)
        // Nothing throws from here on.
        self.address = address
        self.type = type
        self.vfio = vfio
        self.transport = transport
        self.memory = memory
        self.stateMemory = stateMemory
        restoredMemfds = [dma, state]
        container = VFIOContainer(adopting: containerFD, mappings: [(Self.iovaBase, UInt64(memory.size))])
        group = VFIOGroup(adopting: fds[groupKey]!, number: number)
        offeredFeatures = transport.readDeviceFeatures()
        handover = HandoverArea(region: stateMemory.region(deviceBase: 0))
        vectors = indexed("msix.").map { EventFD(fd: $0) }
        intx = fds["intx"].map { EventFD(fd: $0) }
        request = fds["req"].map { EventFD(fd: $0) }
        if let tapName {
            taps = tapFDs.map { TAPInterface(fd: $0, name: tapName) }
            if offeredFeatures & NetFeatures.mac.rawValue != 0, transport.configSize >= 6 {
                tapMAC = try? transport.readConfig(offset: 0, length: 6)
            }
        }
    }

    /// The memfds of a device taken back from the fd store: their mappings
    /// do not own them, so `close()` does.
    private var restoredMemfds: [FileDescriptor] = []

    /// Open /dev/vfio/N, waiting up to 5 s for the node to appear after the bind.
    static func openGroup(_ number: Int) throws -> VFIOGroup {
        var attempts = 0
        while true {
            do { return try VFIOGroup(number: number) } catch let e as SystemCallError where e.errno == .noSuchFileOrDirectory {
                attempts += 1
                guard attempts < 250 else { throw ClaimError.setup("/dev/vfio/\(number) did not appear within 5 s of binding vfio-pci") }
                usleep(20_000)
            }
        }
    }

    /// net: make the TAP interface `name` (or vtnet%d) with virtio-net headers
    /// and the device's MAC address (virtio 1.2 §5.1.4, read if offered).
    /// net: queue pairs virtiod will use (VIRTIO_NET_F_MQ, §5.1.4), at most `maxQueuePairs`.
    var queuePairs: Int { Self.queuePairs(type, offeredFeatures, transport) }

    static func queuePairs(_ type: DeviceType, _ offered: UInt64, _ transport: any Transport) -> Int {
        guard type == .network, offered & NetFeatures.multiqueue.rawValue != 0, transport.configSize >= 10,
              let n = try? transport.readConfig(UInt16.self, at: 8) else { return 1 }
        return max(1, min(maxQueuePairs, Int(n)))
    }

    func createTAP(name: String?) throws -> TAPInterface {
        // One TAP queue per virtqueue pair.
        let pairs = queuePairs
        let t = try TAPInterface.open(name: name ?? "vtnet%d", multiQueue: pairs > 1)
        var more: [TAPInterface] = []
        do {
            for _ in 1..<pairs { more.append(try TAPInterface.open(name: t.name, multiQueue: true)) }
            for q in more { try q.setVnetHeaderSize(12) }
            // VERSION_1 devices always use the 12-byte header (§5.1.6).
            try t.setVnetHeaderSize(12)
            if offeredFeatures & NetFeatures.mac.rawValue != 0, transport.configSize >= 6 {
                tapMAC = try transport.readConfig(offset: 0, length: 6)
                try t.setMACAddress(tapMAC!)
            }
            if offeredFeatures & NetFeatures.mtu.rawValue != 0, transport.configSize >= 12 {
                // Device-written: only an MTU an Ethernet interface can have is used.
                let mtu = Int(try transport.readConfig(UInt16.self, at: 10))
                if (68...65535).contains(mtu) {
                    try t.setMTU(mtu)
                } else {
                    Log.warning("device reports MTU \(mtu); keeping the TAP's default", device: address)
                }
            }
        } catch {
            try? t.fd.close()
            for q in more { try? q.fd.close() }
            throw error
        }
        taps = [t] + more
        return t
    }

    /// Reset the device (status 0): used before a fresh plugin takes over.
    /// Any hand-over record is void afterwards.
    public func resetDevice() {
        handover.markLive()
        do { try transport.reset() } catch { Log.warning("device reset failed: \(error)", device: address) }
    }

    /// Reset the device and close every fd; after this the device can be
    /// unbound from vfio-pci.
    public func close() {
        guard !closed else { return }
        closed = true
        try? transport.reset()
        if !vectors.isEmpty { try? vfio.disableMSIX() }
        if let intx { try? vfio.disableINTx(); intx.close() }
        try? container.unmapDMA(iova: Self.iovaBase, size: memory.size)
        for v in vectors { v.close() }
        request?.close()
        for t in taps { try? t.fd.close() }
        taps = []
        for m in restoredMemfds { try? m.close() }
        restoredMemfds = []
        try? vfio.fd.close()
    }

    /// Set when virtiod exits for a restart: the device keeps running (its
    /// fds live on in systemd's store), so nothing is reset or closed here.
    var leaveRunning = false

    deinit { if !leaveRunning { close() } }
}
