import CVirtioShim
import Glibc
import SystemPackage

/// One region of a VFIO device (BAR 0–5, PCI config space = 7), as the kernel describes it.
public struct VFIORegionInfo: Sendable, Hashable {
    public var index: UInt32
    public var size: UInt64
    /// Where the region starts in the device fd (for pread/pwrite/mmap).
    public var offset: UInt64
    public var readable: Bool
    public var writable: Bool
    public var mappable: Bool
}

/// A VFIO device fd (thin wrapper): region info and access, MSI-X eventfds,
/// reset. The supervisor opens it; plugins get duplicates. The kernel resets
/// the device when the last duplicate closes.
public struct VFIODevice: Sendable {
    public let fd: FileDescriptor
    public init(fd: FileDescriptor) { self.fd = fd }

    public static let configRegionIndex = UInt32(VFIO_PCI_CONFIG_REGION_INDEX)
    public static let msixIRQIndex = UInt32(VFIO_PCI_MSIX_IRQ_INDEX)

    public struct Info: Sendable {
        public var regions: Int
        public var irqs: Int
        public var canReset: Bool
    }

    public func info() throws -> Info {
        var info = vfio_device_info()
        info.argsz = UInt32(MemoryLayout<vfio_device_info>.size)
        _ = try vfioIoctl(fd, .deviceGetInfo, &info)
        return Info(regions: Int(info.num_regions), irqs: Int(info.num_irqs),
                    canReset: info.flags & UInt32(VFIO_DEVICE_FLAGS_RESET) != 0)
    }

    public func region(_ index: UInt32) throws -> VFIORegionInfo {
        var r = vfio_region_info()
        r.argsz = UInt32(MemoryLayout<vfio_region_info>.size)
        r.index = index
        _ = try vfioIoctl(fd, .deviceGetRegionInfo, &r)
        return VFIORegionInfo(index: index, size: r.size, offset: r.offset,
                              readable: r.flags & UInt32(VFIO_REGION_INFO_FLAG_READ) != 0,
                              writable: r.flags & UInt32(VFIO_REGION_INFO_FLAG_WRITE) != 0,
                              mappable: r.flags & UInt32(VFIO_REGION_INFO_FLAG_MMAP) != 0)
    }

    /// Number of MSI-X vectors the device has (0: no MSI-X).
    public func msixVectorCount() throws -> Int {
        var irq = vfio_irq_info()
        irq.argsz = UInt32(MemoryLayout<vfio_irq_info>.size)
        irq.index = Self.msixIRQIndex
        _ = try vfioIoctl(fd, .deviceGetIRQInfo, &irq)
        return Int(irq.count)
    }

    /// VFIO_DEVICE_SET_IRQS for one IRQ index: with `eventfds`, route
    /// interrupts start..<start+count to them (ACTION_TRIGGER, DATA_EVENTFD);
    /// with none and `action` TRIGGER, disable the index; UNMASK unmasks.
    func setIRQs(index: UInt32, action: Int32 = VFIO_IRQ_SET_ACTION_TRIGGER, eventfds: [EventFD]?, count: Int = 0) throws {
        // SAFETY: struct vfio_irq_set ends in a flexible `data[]` array; the
        // buffer holds the header and one 4-byte fd per eventfd, argsz says
        // so, and every store is within the buffer. The kernel reads argsz bytes.
        let header = MemoryLayout<vfio_irq_set>.size
        let fds = eventfds ?? []
        var buf = [UInt8](repeating: 0, count: header + 4 * fds.count)
        try buf.withUnsafeMutableBytes { raw in
            var set = vfio_irq_set()
            set.argsz = UInt32(raw.count)
            set.flags = UInt32((eventfds == nil ? VFIO_IRQ_SET_DATA_NONE : VFIO_IRQ_SET_DATA_EVENTFD) | action)
            set.index = index
            set.start = 0
            set.count = UInt32(eventfds == nil ? count : fds.count)
            raw.storeBytes(of: set, toByteOffset: 0, as: vfio_irq_set.self)
            for (i, e) in fds.enumerated() {
                raw.storeBytes(of: e.fd.rawValue, toByteOffset: header + 4 * i, as: CInt.self)
            }
            _ = try vfioIoctl(fd, .deviceSetIRQs, raw.baseAddress!)
        }
    }

    /// Route MSI-X vectors 0..<eventfds.count to the eventfds (enables MSI-X).
    public func enableMSIX(_ eventfds: [EventFD]) throws {
        try setIRQs(index: Self.msixIRQIndex, eventfds: eventfds)
    }

    /// Turn MSI-X off again (no eventfds).
    public func disableMSIX() throws {
        try setIRQs(index: Self.msixIRQIndex, eventfds: nil)
    }

    /// Function-level reset (VFIO_DEVICE_RESET); not every slot supports it.
    public func reset() throws {
        _ = try vfioIoctl(fd, .deviceReset, value: 0)
    }

    /// Read bytes of a region with pread (config space, or a BAR without mmap).
    public func read(region: VFIORegionInfo, offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard offset >= 0, UInt64(offset) + UInt64(buffer.count) <= region.size else {
            throw SystemCallError("read beyond region \(region.index)", .invalidArgument)
        }
        let n = pread(fd.rawValue, buffer.baseAddress, buffer.count, off_t(region.offset) + off_t(offset))
        guard n == buffer.count else { throw SystemCallError("pread region \(region.index)+\(offset)") }
    }

    public func write(region: VFIORegionInfo, offset: Int, from buffer: UnsafeRawBufferPointer) throws {
        guard offset >= 0, UInt64(offset) + UInt64(buffer.count) <= region.size else {
            throw SystemCallError("write beyond region \(region.index)", .invalidArgument)
        }
        let n = pwrite(fd.rawValue, buffer.baseAddress, buffer.count, off_t(region.offset) + off_t(offset))
        guard n == buffer.count else { throw SystemCallError("pwrite region \(region.index)+\(offset)") }
    }

}

extension VFIODevice {
    public static let requestIRQIndex = UInt32(VFIO_PCI_REQ_IRQ_INDEX)

    /// Ask vfio-pci to signal `eventfd` when the kernel wants the device back
    /// (hot-unplug, unbind): the holder must then close its fds.
    public func enableRequestIRQ(_ eventfd: EventFD) throws {
        try setIRQs(index: Self.requestIRQIndex, eventfds: [eventfd])
    }
}

extension VFIODevice {
    public static let intxIRQIndex = UInt32(VFIO_PCI_INTX_IRQ_INDEX)

    /// Legacy INTx to `eventfd`, for devices without MSI-X. VFIO masks the
    /// line when it fires; the driver acknowledges the device (ISR read) and
    /// then calls `unmaskINTx()`.
    public func enableINTx(_ eventfd: EventFD) throws {
        try setIRQs(index: Self.intxIRQIndex, eventfds: [eventfd])
    }

    public func unmaskINTx() throws {
        try setIRQs(index: Self.intxIRQIndex, action: VFIO_IRQ_SET_ACTION_UNMASK, eventfds: nil, count: 1)
    }

    public func disableINTx() throws {
        try setIRQs(index: Self.intxIRQIndex, eventfds: nil)
    }
}
