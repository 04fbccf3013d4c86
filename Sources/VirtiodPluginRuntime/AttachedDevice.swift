import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// A device as a plugin holds it: the named fds from the supervisor turned
/// into a transport, DMA memory, interrupt eventfds and endpoints.
public final class AttachedDevice {
    public let info: AttachInfo
    public let transport: VirtioPCITransport
    public let memory: SharedMemory
    public let region: DMARegion
    public var allocator: DMAAllocator
    /// The hand-over area in the state memfd (the supervisor keeps it, so a
    /// record written here outlives this process).
    public let handover: HandoverArea
    let stateMemory: SharedMemory
    /// eventfd per MSI-X vector (vector 0 = configuration changes).
    public let vectors: [EventFD]
    /// The INTx line when the device has no MSI-X.
    public let intx: INTxLine?
    /// Kernel-facing endpoints the supervisor made (and keeps), by kind.
    public let endpoints: [String: AttachedEndpoint]
    /// Whether the device reaches DMA memory at guest-physical addresses
    /// (vfio no-IOMMU mode). Data paths need not know: the region and its
    /// allocator place everything so that it works either way.
    public var physicalDMA: Bool { !region.addressMap.isLinear }

    /// Takes ownership of `fds` (by the names `info.fds` lists).
    init(info: AttachInfo, fds: [String: FileDescriptor], deviceType: DeviceType) throws {
        var pending = fds
        var owned: [FileDescriptor] = []
        func closeAll() { for f in Array(pending.values) + owned { try? f.close() } }
        func take(_ name: String) throws -> FileDescriptor {
            guard let fd = pending.removeValue(forKey: name) else {
                closeAll()
                throw PluginError("attach carried no fd named \(name)")
            }
            owned.append(fd)
            return fd
        }
        // vfio-pci lends one device fd; uio_pci_generic the sysfs files.
        let uio = info.fds.contains(FDName.pciConfig)
        let vfio = uio ? nil : try take(FDName.vfioDevice)
        let pciConfig = uio ? try take(FDName.pciConfig) : nil
        var barFDs: [Int: FileDescriptor] = [:]
        for name in info.fds {
            if let n = FDName.barIndex(name) { barFDs[n] = try take(name) }
        }
        let dma = try take(FDName.dma), state = try take(FDName.state)
        let vectorFDs = try (0..<info.vectors).map { try take(FDName.msix($0)) }
        let intxFD = info.intx ? try take(FDName.intx) : nil
        if uio && intxFD == nil {
            closeAll()
            throw PluginError("attach: a uio_pci_generic device came without its interrupt fd")
        }
        var endpoints: [String: AttachedEndpoint] = [:]
        for e in info.endpoints {
            endpoints[e.kind] = AttachedEndpoint(kind: e.kind, fds: try e.fds.map(take), facts: e.facts)
        }
        guard pending.isEmpty else {
            let extra = pending.keys.sorted()
            closeAll()
            throw PluginError("attach carried fds this plugin does not know: \(extra.joined(separator: ", "))")
        }
        do {
            self.info = info
            memory = try SharedMemory(mapping: dma, size: info.dmaSize, ownsFD: true)
            if let size = info.dmaSegmentSize, let bases = info.dmaSegments {
                guard let map = DMAAddressMap(segmentSize: size, bases: bases), map.coveredSize >= info.dmaSize else {
                    throw PluginError("attach: the DMA memory's segments (\(bases.count) of \(size) bytes) do not cover its \(info.dmaSize) bytes")
                }
                region = DMARegion(base: memory.base, size: memory.size, addressMap: map, owner: memory)
            } else {
                region = memory.region(deviceBase: info.iovaBase)
            }
            allocator = DMAAllocator(regionSize: info.dmaSize, segmentSize: region.segmentSize)
            stateMemory = try SharedMemory(mapping: state, size: info.stateSize, ownsFD: true)
            handover = HandoverArea(region: stateMemory.region(deviceBase: 0))
            vectors = vectorFDs.map { EventFD(fd: $0) }
            self.endpoints = endpoints
            if let pciConfig, let intxFD {
                let function = UIOFunction(config: pciConfig, bars: barFDs, interrupt: intxFD)
                intx = .uio(function)
                transport = try VirtioPCITransport(function: function, deviceType: deviceType)
            } else {
                intx = intxFD.map { .eventfd(EventFD(fd: $0)) }
                transport = try VirtioPCITransport(vfio: VFIODevice(fd: vfio!), deviceType: deviceType)
            }
        } catch {
            for f in owned { try? f.close() }
            throw error
        }
    }

    /// The endpoint of `kind` the plugin's manifest asked for; an error that says so if it is missing.
    public func endpoint(_ kind: String) throws -> AttachedEndpoint {
        guard let e = endpoints[kind] else {
            throw PluginError("no \(kind) endpoint from the supervisor (does the manifest say Endpoints=\(kind)?)")
        }
        return e
    }

    /// MSI-X vector for queue `index`: one per queue while there are enough,
    /// vector 0 is for configuration changes.
    func vector(forQueue index: Int) -> UInt16 {
        guard info.vectors > 0 else { return noMSIXVector }
        guard info.vectors > 1 else { return 0 }
        return UInt16(min(1 + index, info.vectors - 1))
    }
}

/// One endpoint as a plugin gets it: duplicates of the supervisor's fds, in
/// index order, and what the supervisor says about it (e.g. "interface").
public struct AttachedEndpoint: Sendable {
    public let kind: String
    public let fds: [FileDescriptor]
    public let facts: [String: String]
}

public struct PluginError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A device's legacy interrupt line as a plugin waits on it: VFIO signals an
/// eventfd, uio_pci_generic makes /dev/uioN readable. Either way the line
/// stays masked until the driver read the ISR and unmasked it through the
/// transport's `PCIFunction`.
public enum INTxLine {
    case eventfd(EventFD)
    case uio(UIOFunction)

    public var fd: FileDescriptor {
        switch self {
        case .eventfd(let e): e.fd
        case .uio(let u): u.interrupt
        }
    }

    /// Take the pending notification (so the fd is quiet until the next).
    public func consume() throws {
        switch self {
        case .eventfd(let e): _ = try e.consume()
        case .uio(let u): _ = try u.consumeInterrupt()
        }
    }
}
