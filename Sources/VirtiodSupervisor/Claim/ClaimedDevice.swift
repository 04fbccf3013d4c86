import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// Everything the supervisor holds for a device it claimed: the VFIO
/// container, group and device fds, the DMA memfd mapped for the IOMMU, the
/// MSI-X eventfds, the device-request eventfd and the device's kernel-facing
/// endpoints. These outlive any plugin (the kernel resets a VFIO device when
/// its last fd closes); plugins get duplicates. `close()` gives them all up
/// in the safe order.
public final class ClaimedDevice {
    public static let iovaBase: UInt64 = 0x1_0000_0000
    public static let defaultDMASize = 4 << 20
    /// Most MSI-X vectors enabled: a config vector and one per queue for up to 256 queues.
    static let maxVectors = 257

    public let address: String
    public let type: DeviceType
    /// How the device was lent to userspace.
    enum Access {
        /// vfio-pci: a container (IOMMU or no-IOMMU), its group, the device fd.
        case vfio(container: VFIOContainer, group: VFIOGroup, device: VFIODevice)
        /// uio_pci_generic (no IOMMU, and no VFIO no-IOMMU mode in the kernel).
        case uio(UIOFunction)
    }
    let access: Access
    var container: VFIOContainer? { if case .vfio(let c, _, _) = access { c } else { nil } }
    public var vfio: VFIODevice? { if case .vfio(_, _, let d) = access { d } else { nil } }
    public let transport: VirtioPCITransport
    public let memory: SharedMemory
    /// How the device reaches `memory`: one IOMMU mapping at `iovaBase`, or
    /// (no-IOMMU mode) hugepages at their guest-physical addresses.
    public let addressMap: DMAAddressMap
    /// The device reaches guest-physical addresses: claimed without an
    /// IOMMU (vfio's no-IOMMU mode or uio_pci_generic), or it bypasses the
    /// IOMMU it sits behind (no ACCESS_PLATFORM, with UnsafeNoIOMMU=yes).
    public var noIOMMU: Bool { !addressMap.isLinear }
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
    /// Kernel-facing endpoints made for the device (`Endpoint`), in manifest order.
    var endpoints: [any Endpoint] = []
    private var closed = false

    /// Open the device through VFIO (already bound to vfio-pci), check it is
    /// a device virtiod can drive safely, reset it and set up DMA (of the size
    /// `dmaSize` computes from the device) and MSI-X.
    /// `noIOMMU`: the group is a no-IOMMU group (/dev/vfio/noiommu-N) and
    /// DMA memory is hugepages at guest-physical addresses.
    /// `bypassAllowed` (UnsafeNoIOMMU=yes): a device in an IOMMU group that
    /// does not offer ACCESS_PLATFORM — it DMAs to guest-physical addresses
    /// past the IOMMU, as QEMU's transitional devices do — gets the same
    /// physically addressed memory instead of a refusal.
    init(address: String, type: DeviceType, iommuGroup: Int, noIOMMU: Bool = false, bypassAllowed: Bool = false,
         checks: ClaimChecks, dmaSize: (VirtioPCITransport, _ offered: UInt64) -> Int) throws {
        self.address = address
        self.type = type
        let container = try VFIOContainer(noIOMMU: noIOMMU)
        let group = try Self.openGroup(iommuGroup, noIOMMU: noIOMMU)
        try group.attach(to: container)
        try container.setIOMMU()
        let vfio = VFIODevice(fd: try group.device(address: address))
        access = .vfio(container: container, group: group, device: vfio)
        do {
            (transport, offeredFeatures) = try Self.checkedTransport(vfio, address: address, type: type, checks: checks,
                                                                     physicalDMA: noIOMMU || bypassAllowed)
            let wanted = max(dmaSize(transport, offeredFeatures), 1 << 16)
            let physical = noIOMMU || offeredFeatures & TransportFeatures.accessPlatform.rawValue == 0
            if physical {
                (memory, addressMap) = try Self.physicalMemory(wanted, address: address)
            } else {
                // Whole pages: the IOMMU maps pages.
                memory = try SharedMemory(name: "virtiod-dma-\(address)", size: (wanted + 4095) & ~4095)
                addressMap = .linear(Self.iovaBase)
            }
            stateMemory = try SharedMemory(name: "virtiod-state-\(address)", size: Self.stateSize)
            handover = HandoverArea(region: stateMemory.region(deviceBase: 0))
            if !physical { try container.mapDMA(vaddr: memory.base, iova: Self.iovaBase, size: memory.size) }
            try vfio.enableBusMaster()
            let table = try vfio.msixVectorCount()
            // Every vector of the table (up to `maxVectors`). Not sized by
            // num_queues: QEMU's virtio-net changes that with the negotiated
            // features (MQ), which happens later, in the plugin.
            let count = min(table, Self.maxVectors)
            // Every eventfd made here is closed again if anything below fails.
            var made: [EventFD] = []
            do {
                for _ in 0..<count { made.append(try EventFD()) }
                if count > 0 {
                    try vfio.enableMSIX(made)
                    intx = nil
                } else {
                    let e = try EventFD()
                    made.append(e)
                    try vfio.enableINTx(e)
                    intx = e
                }
            } catch {
                for e in made { e.close() }
                throw error
            }
            vectors = count > 0 ? made : []
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

    /// The transport of a device just lent, and the features it offers,
    /// once it passed the checks that need the device itself (a modern
    /// interface; ACCESS_PLATFORM unless `physicalDMA`) — before bus
    /// mastering is on, so a refused device never did DMA. Then the device
    /// is reset: it may hold state from an earlier driver.
    static func checkedTransport(_ function: any PCIFunction, address: String, type: DeviceType, checks: ClaimChecks,
                                 physicalDMA: Bool) throws -> (VirtioPCITransport, UInt64) {
        let transport: VirtioPCITransport
        do { transport = try VirtioPCITransport(function: function, deviceType: type) } catch PCICapabilityError.missing(let what) {
            throw ClaimError.refused(checks.legacyOnly(address, missing: what))
        }
        let offered = transport.readDeviceFeatures()
        if let refusal = checks.accessPlatform(offered: offered, address: address, physicalDMA: physicalDMA) {
            throw ClaimError.refused(refusal)
        }
        try transport.reset()
        return (transport, offered)
    }

    /// DMA memory for a device without an IOMMU: hugepages, each its own
    /// physical range, with room for pieces that move on to the next page
    /// rather than cross one.
    static func physicalMemory(_ wanted: Int, address: String) throws -> (SharedMemory, DMAAddressMap) {
        guard let page = Hugepages.defaultSize() else { throw ClaimError.setup("no-IOMMU mode needs hugepages; this kernel has none") }
        let size = (wanted + wanted / 4 + 2 * page + page - 1) / page * page
        let memory: SharedMemory
        do { memory = try SharedMemory.hugepages(name: "virtiod-dma-\(address)", size: size) } catch {
            throw ClaimError.setup("DMA memory for no-IOMMU mode: \(error)")
        }
        return (memory, try physicalAddressMap(memory, address: address))
    }

    /// Where the device finds each hugepage of `memory` (new, or taken back
    /// from the fd store: the same pages, so the same addresses).
    static func physicalAddressMap(_ memory: SharedMemory, address: String) throws -> DMAAddressMap {
        guard let page = Hugepages.defaultSize(),
              let map = DMAAddressMap(segmentSize: page, bases: try memory.physicalPages(pageSize: page)) else {
            throw ClaimError.setup("the hugepage DMA memory of \(address) gives no address map")
        }
        return map
    }

    /// A device bound to uio_pci_generic (no IOMMU; the kernel has no VFIO
    /// no-IOMMU mode): `function`'s fds are taken (closed on failure).
    /// Interrupts: its one INTx line, through /dev/uioN.
    init(uio function: UIOFunction, address: String, type: DeviceType, checks: ClaimChecks,
         dmaSize: (VirtioPCITransport, _ offered: UInt64) -> Int) throws {
        self.address = address
        self.type = type
        access = .uio(function)
        do {
            (transport, offeredFeatures) = try Self.checkedTransport(function, address: address, type: type, checks: checks,
                                                                     physicalDMA: true)
            (memory, addressMap) = try Self.physicalMemory(max(dmaSize(transport, offeredFeatures), 1 << 16), address: address)
            stateMemory = try SharedMemory(name: "virtiod-state-\(address)", size: Self.stateSize)
            handover = HandoverArea(region: stateMemory.region(deviceBase: 0))
            try function.enableBusMaster()
        } catch {
            for fd in function.fds { try? fd.close() }
            throw error
        }
        vectors = []
        intx = EventFD(fd: function.interrupt)
        request = nil
    }

    // MARK: across restarts of virtiod (systemd's fd store)

    /// Prefix of this device's fd names in the store ("0000-00-03.0"; ':' is not allowed there).
    static func storeSlug(_ address: String) -> String { String(address.map { $0 == ":" ? "-" : $0 }) }

    /// Every fd the device needs to survive a restart of virtiod, named.
    var storeEntries: [(name: String, fd: FileDescriptor, poll: Bool)] {
        let slug = Self.storeSlug(address)
        var e: [(String, FileDescriptor)]
        switch access {
        case .vfio(let container, let group, let vfio):
            e = [("container", container.fd), ("group.\(group.number)", group.fd), ("device", vfio.fd)]
        case .uio(let f):
            e = f.namedFDs
        }
        // sysfs files poll as EPOLLERR|EPOLLPRI always (kernfs: that is how
        // sysfs_notify works), which systemd would take for a dead fd and drop.
        var unpolled = Set(e.map(\.0))
        if case .vfio = access { unpolled = [] }
        e += [("dma", memory.fd), ("state", stateMemory.fd)]
        e += vectors.enumerated().map { ("msix.\($0)", $1.fd) }
        if let intx { e.append(("intx", intx.fd)) }
        if let request { e.append(("req", request.fd)) }
        for endpoint in endpoints {
            let kind = Swift.type(of: endpoint).kind
            let names = endpoint.fds.enumerated().map { ("\(Self.endpointPrefix)\(FDName.endpoint(kind, $0))", $1) }
            e += names
            if !Swift.type(of: endpoint).storeWithPolling { unpolled.formUnion(names.map(\.0)) }
            if let state = endpoint.stateFD { e.append(("\(Self.endpointPrefix)\(kind).\(Self.endpointStateSuffix)", state)) }
        }
        return e.map { ("\(slug)/\($0.0)", $0.1, !unpolled.contains($0.0)) }
    }

    /// Park every fd of the device in the store.
    func storeFDs() {
        guard FDStore.available else { return }
        do {
            for (name, fd, poll) in storeEntries { try FDStore.store(fd, name: name, poll: poll) }
        } catch {
            Log.warning("fd store: \(error); a restart of virtiod will reset this device", device: address)
        }
    }

    /// Run `change`, which may replace endpoint fds (true if it did); then the
    /// store's copies under the old names go and every fd is stored again.
    func updatingStore(_ change: () throws -> Bool) rethrows {
        let before = storeEntries.map(\.name)
        guard try change(), FDStore.available else { return }
        FDStore.remove(names: before)
        storeFDs()
    }

    /// Take the store's copies out (before the device is given back).
    func removeStoredFDs() { FDStore.remove(names: storeEntries.map(\.name)) }

    /// Store names of endpoint fds start with this ("ep.tap.0").
    static let endpointPrefix = "ep."
    /// …and an endpoint's own state memfd is "ep.<kind>.state".
    static let endpointStateSuffix = "state"

    /// Take back a device an earlier virtiod claimed, from its stored fds
    /// (keys without the slug; endpoints and plugin sockets are the caller's): nothing is reset or reprogrammed — the IOMMU
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
        // uio_pci_generic: its sysfs files instead of VFIO's fds.
        let uio: UIOFunction?
        var groupKey = "", number = 0
        if let config = fds[FDName.pciConfig] {
            var bars: [Int: FileDescriptor] = [:]
            for (key, fd) in fds { if let n = FDName.barIndex(key) { bars[n] = fd } }
            uio = UIOFunction(config: config, bars: bars, interrupt: try need("intx"))
        } else {
            uio = nil
            guard let key = fds.keys.first(where: { $0.hasPrefix("group.") }), let n = Int(key.dropFirst(6)) else {
                throw ClaimError.setup("fd store holds no VFIO group fd for \(address)")
            }
            (groupKey, number) = (key, n)
        }
        func size(_ fd: FileDescriptor) -> Int {
            var st = stat()
            return fstat(fd.rawValue, &st) == 0 ? Int(st.st_size) : 0
        }
        let dma = try need("dma"), state = try need("state")
        /// "msix.0", "msix.1", … in index order.
        func indexed(_ prefix: String) -> [FileDescriptor] {
            var found: [(Int, FileDescriptor)] = []
            for (key, fd) in fds where key.hasPrefix(prefix) {
                if let i = Int(key.dropFirst(prefix.count)) { found.append((i, fd)) }
            }
            return found.sorted { $0.0 < $1.0 }.map(\.1)
        }
        // These own no fd (the memfds are mapped without taking them).
        let vfioDevice = uio == nil ? VFIODevice(fd: try need("device")) : nil
        let function: any PCIFunction = uio ?? vfioDevice!
        let containerFD = uio == nil ? try need("container") : nil
        let transport = try VirtioPCITransport(function: function, deviceType: type)
        let memory = try SharedMemory(mapping: dma, size: size(dma), ownsFD: false)
        let stateMemory = try SharedMemory(mapping: state, size: size(state), ownsFD: false)
        for m in [memory, stateMemory] {
            do { try m.sealSize() } catch { Log.warning("\(error): its size stays unsealed", device: address) }
        }
        // Hugepage DMA memory means the device reaches physical addresses
        // (no IOMMU, or one it bypasses): nothing is mapped in its container,
        // and the same pages are still where the device has been told they are.
        let noIOMMU = memory.isHugepages
        let addressMap = noIOMMU ? try Self.physicalAddressMap(memory, address: address) : .linear(Self.iovaBase)
        // Nothing throws from here on.
        self.address = address
        self.type = type
        self.transport = transport
        self.memory = memory
        self.addressMap = addressMap
        self.stateMemory = stateMemory
        restoredMemfds = [dma, state]
        if let uio {
            access = .uio(uio)
        } else {
            access = .vfio(container: VFIOContainer(adopting: containerFD!, mappings: noIOMMU ? [] : [(Self.iovaBase, UInt64(memory.size))],
                                                    noIOMMU: noIOMMU),
                           group: VFIOGroup(adopting: fds[groupKey]!, number: number, noIOMMU: noIOMMU),
                           device: vfioDevice!)
        }
        offeredFeatures = transport.readDeviceFeatures()
        handover = HandoverArea(region: stateMemory.region(deviceBase: 0))
        vectors = indexed("msix.").map { EventFD(fd: $0) }
        intx = fds["intx"].map { EventFD(fd: $0) }
        request = fds["req"].map { EventFD(fd: $0) }
    }

    /// The memfds of a device taken back from the fd store: their mappings
    /// do not own them, so `close()` does.
    private var restoredMemfds: [FileDescriptor] = []

    /// Open /dev/vfio/N (or noiommu-N), waiting up to 5 s for the node to appear after the bind.
    static func openGroup(_ number: Int, noIOMMU: Bool) throws -> VFIOGroup {
        var attempts = 0
        while true {
            do { return try VFIOGroup(number: number, noIOMMU: noIOMMU) } catch let e as SystemCallError where e.errno == .noSuchFileOrDirectory {
                attempts += 1
                guard attempts < 250 else {
                    throw ClaimError.setup("\(VFIOGroup.path(number: number, noIOMMU: noIOMMU)) did not appear within 5 s of binding vfio-pci")
                }
                usleep(20_000)
            }
        }
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
        switch access {
        case .vfio(let container, _, let vfio):
            if !vectors.isEmpty { try? vfio.disableMSIX() }
            if let intx { try? vfio.disableINTx(); intx.close() }
            try? container.unmapDMA(iova: Self.iovaBase, size: memory.size)
        case .uio(let f):
            try? f.disableBusMaster()
        }
        for v in vectors { v.close() }
        request?.close()
        for e in endpoints { e.close() }
        endpoints = []
        for m in restoredMemfds { try? m.close() }
        restoredMemfds = []
        switch access {
        case .vfio(_, _, let vfio): try? vfio.fd.close()
        case .uio(let f): for fd in f.fds { try? fd.close() } // with /dev/uioN, which `intx` wraps
        }
    }

    /// Set when virtiod exits for a restart: the device keeps running (its
    /// fds live on in systemd's store), so nothing is reset or closed here.
    var leaveRunning = false

    deinit { if !leaveRunning { close() } }
}

extension ClaimedDevice {
    /// Every fd its plugin gets, named as `AttachInfo.fds` lists them.
    var pluginFDs: [(name: String, fd: FileDescriptor)] {
        var e: [(String, FileDescriptor)]
        switch access {
        case .vfio(_, _, let vfio): e = [(FDName.vfioDevice, vfio.fd)]
        case .uio(let f): e = f.namedFDs
        }
        e += [(FDName.dma, memory.fd), (FDName.state, stateMemory.fd)]
        e += vectors.enumerated().map { (FDName.msix($0), $1.fd) }
        if let intx { e.append((FDName.intx, intx.fd)) }
        for endpoint in endpoints {
            e += endpoint.fds.enumerated().map { (FDName.endpoint(Swift.type(of: endpoint).kind, $0), $1) }
        }
        return e
    }
}

extension UIOFunction {
    /// Its sysfs fds by the names plugins and the fd store know them
    /// (`pci-config`, `pci-bar.N`); /dev/uioN travels as `intx`.
    var namedFDs: [(String, FileDescriptor)] {
        [(FDName.pciConfig, config)] + bars.keys.sorted().map { (FDName.bar($0), bars[$0]!) }
    }
}
