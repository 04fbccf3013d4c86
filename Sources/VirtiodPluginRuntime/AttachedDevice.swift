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
    /// The hand-over area in the state memfd (the supervisor keeps it, so a
    /// record written here outlives this process).
    public let handover: HandoverArea
    private let stateMemory: SharedMemory
    /// eventfd per MSI-X vector (vector 0 = configuration changes).
    public let vectors: [EventFD]
    /// INTx eventfd when the device has no MSI-X.
    public let intx: EventFD?
    /// net: the TAP interface's queues (held by the supervisor too, so the
    /// interface outlives this process); one unless multi-queue.
    public let taps: [TAPInterface]
    public var tap: TAPInterface? { taps.first }

    /// Takes ownership of `fds` (VFIO device, DMA memfd, state memfd,
    /// eventfds, TAP fds, in that order).
    init(info: AttachInfo, fds: [FileDescriptor], deviceType: DeviceType) throws {
        let tapCount = info.tapInterface != nil ? max(1, info.tapQueues) : 0
        let expected = 3 + info.vectors + (info.intx ? 1 : 0) + tapCount
        guard fds.count == expected else {
            for f in fds { try? f.close() }
            throw PluginError("attach carried \(fds.count) fds, expected \(expected)")
        }
        self.info = info
        memory = try SharedMemory(mapping: fds[1], size: info.dmaSize, ownsFD: true)
        region = memory.region(deviceBase: info.iovaBase)
        allocator = DMAAllocator(regionSize: info.dmaSize)
        stateMemory = try SharedMemory(mapping: fds[2], size: info.stateSize, ownsFD: true)
        handover = HandoverArea(region: stateMemory.region(deviceBase: 0))
        vectors = fds[3..<(3 + info.vectors)].map { EventFD(fd: $0) }
        intx = info.intx ? EventFD(fd: fds[3 + info.vectors]) : nil
        taps = info.tapInterface.map { name in fds.suffix(tapCount).map { TAPInterface(fd: $0, name: name) } } ?? []
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
