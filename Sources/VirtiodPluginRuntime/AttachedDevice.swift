import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// A device as a plugin holds it: the fds from the supervisor turned into a
/// transport, DMA memory and interrupt eventfds.
public final class AttachedDevice {
    public let info: AttachInfo
    public let transport: VirtioPCITransport
    public let memory: SharedMemory
    public let region: DMARegion
    public var allocator: DMAAllocator
    /// eventfd per MSI-X vector (vector 0 = configuration changes).
    public let vectors: [EventFD]
    /// INTx eventfd when the device has no MSI-X.
    public let intx: EventFD?
    /// net: the TAP interface (held by the supervisor too, so it outlives this process).
    public let tap: TAPInterface?

    /// Takes ownership of `fds` (VFIO device, memfd, eventfds, in that order).
    init(info: AttachInfo, fds: [FileDescriptor], deviceType: DeviceType) throws {
        let expected = 2 + info.vectors + (info.intx ? 1 : 0) + (info.tapInterface != nil ? 1 : 0)
        guard fds.count == expected else {
            for f in fds { try? f.close() }
            throw PluginError("attach carried \(fds.count) fds, expected \(expected)")
        }
        self.info = info
        memory = try SharedMemory(mapping: fds[1], size: info.dmaSize, ownsFD: true)
        region = memory.region(deviceBase: info.iovaBase)
        allocator = DMAAllocator(regionSize: info.dmaSize)
        vectors = fds[2..<(2 + info.vectors)].map { EventFD(fd: $0) }
        intx = info.intx ? EventFD(fd: fds[2 + info.vectors]) : nil
        tap = info.tapInterface.map { TAPInterface(fd: fds[fds.count - 1], name: $0) }
        transport = try VirtioPCITransport(vfio: VFIODevice(fd: fds[0]), deviceType: deviceType)
    }

    /// MSI-X vector for queue `index`: one per queue while there are enough,
    /// vector 0 is for configuration changes.
    func vector(forQueue index: Int) -> UInt16 {
        guard info.vectors > 0 else { return noMSIXVector }
        guard info.vectors > 1 else { return 0 }
        return UInt16(min(1 + index, info.vectors - 1))
    }
}

public struct PluginError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
