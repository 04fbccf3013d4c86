import CVirtioShim
import Glibc
import SystemPackage

/// A VFIO container (/dev/vfio/vfio): one IOMMU address space. virtiod gives
/// each claimed device its own container, so releasing one device tears
/// down nothing another uses. (Linux VFIO "group" API.)
public final class VFIOContainer: @unchecked Sendable {
    // SAFETY: the fd is owned and closed in deinit; no raw memory is held.
    public let fd: FileDescriptor
    public private(set) var mappings: [(iova: UInt64, size: UInt64)] = []
    /// vfio's no-IOMMU model (Documentation/driver-api/vfio.rst, "VFIO
    /// no-IOMMU"): the device reaches guest-physical addresses, nothing is
    /// mapped or pinned through the container.
    public let noIOMMU: Bool

    /// The model this container uses: type1v2, or no-IOMMU.
    private var model: Int32 { noIOMMU ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU }

    public init(noIOMMU: Bool = false) throws {
        self.noIOMMU = noIOMMU
        do { fd = try FileDescriptor.open("/dev/vfio/vfio", .readWrite, options: .closeOnExec) } catch let e as Errno {
            throw SystemCallError("open /dev/vfio/vfio", e)
        }
        let version = try vfioIoctl(fd, .getAPIVersion, value: 0)
        guard version == VFIO_API_VERSION else {
            try? fd.close()
            throw SystemCallError("VFIO API version \(version), expected \(VFIO_API_VERSION)", .notSupported)
        }
        guard try vfioIoctl(fd, .checkExtension, value: model) > 0 else {
            try? fd.close()
            throw SystemCallError(noIOMMU ? "VFIO no-IOMMU mode not available (vfio's enable_unsafe_noiommu_mode is off)"
                                          : "VFIO type1v2 IOMMU not supported", .notSupported)
        }
    }

    /// A container opened by an earlier virtiod (from systemd's fd store):
    /// its group and IOMMU mappings are still in place.
    public init(adopting fd: FileDescriptor, mappings: [(iova: UInt64, size: UInt64)], noIOMMU: Bool = false) {
        self.fd = fd
        self.mappings = mappings
        self.noIOMMU = noIOMMU
    }

    /// Choose the IOMMU model; call after the first group joined.
    public func setIOMMU() throws {
        _ = try vfioIoctl(fd, .setIOMMU, value: model)
    }

    /// Let the device reach `size` bytes at `vaddr` (pinned) at device address `iova`.
    /// Not in no-IOMMU mode (there is nothing to map through).
    public func mapDMA(vaddr: UnsafeMutableRawPointer, iova: UInt64, size: Int) throws {
        guard !noIOMMU else { throw SystemCallError("VFIO_IOMMU_MAP_DMA in no-IOMMU mode", .notSupported) }
        var map = vfio_iommu_type1_dma_map()
        map.argsz = UInt32(MemoryLayout<vfio_iommu_type1_dma_map>.size)
        map.flags = UInt32(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
        map.vaddr = UInt64(UInt(bitPattern: vaddr))
        map.iova = iova
        map.size = UInt64(size)
        _ = try vfioIoctl(fd, .iommuMapDMA, &map)
        mappings.append((iova, UInt64(size)))
    }

    public func unmapDMA(iova: UInt64, size: Int) throws {
        guard !noIOMMU else { return }
        var unmap = vfio_iommu_type1_dma_unmap()
        unmap.argsz = UInt32(MemoryLayout<vfio_iommu_type1_dma_unmap>.size)
        unmap.iova = iova
        unmap.size = UInt64(size)
        _ = try vfioIoctl(fd, .iommuUnmapDMA, &unmap)
        mappings.removeAll { $0.iova == iova }
    }

    deinit { try? fd.close() }
}

/// A VFIO group (/dev/vfio/N): the unit of isolation the IOMMU gives. All
/// of its devices must be bound to vfio-pci before it is viable.
public final class VFIOGroup: @unchecked Sendable {
    // SAFETY: the fd is owned and closed in deinit; no raw memory is held.
    public let fd: FileDescriptor
    public let number: Int

    /// Whether this is a no-IOMMU group (/dev/vfio/noiommu-N).
    public let noIOMMU: Bool

    /// The group file's path: /dev/vfio/N, or /dev/vfio/noiommu-N for the
    /// groups vfio-pci makes for devices without an IOMMU in no-IOMMU mode.
    public static func path(number: Int, noIOMMU: Bool) -> String {
        noIOMMU ? "/dev/vfio/noiommu-\(number)" : "/dev/vfio/\(number)"
    }

    public init(number: Int, noIOMMU: Bool = false) throws {
        self.number = number
        self.noIOMMU = noIOMMU
        let path = Self.path(number: number, noIOMMU: noIOMMU)
        do { fd = try FileDescriptor.open(FilePath(path), .readWrite, options: .closeOnExec) } catch let e as Errno {
            throw SystemCallError("open \(path)", e)
        }
        var status = vfio_group_status()
        status.argsz = UInt32(MemoryLayout<vfio_group_status>.size)
        _ = try vfioIoctl(fd, .groupGetStatus, &status)
        guard status.flags & UInt32(VFIO_GROUP_FLAGS_VIABLE) != 0 else {
            try? fd.close()
            throw SystemCallError("IOMMU group \(number) is not viable (a member is not bound to vfio-pci)", .resourceBusy)
        }
    }

    /// A group fd kept open across a restart of virtiod (fd store).
    public init(adopting fd: FileDescriptor, number: Int, noIOMMU: Bool = false) {
        self.fd = fd
        self.number = number
        self.noIOMMU = noIOMMU
    }

    public func attach(to container: VFIOContainer) throws {
        var c = container.fd.rawValue
        _ = try vfioIoctl(fd, .groupSetContainer, &c)
    }

    /// The device fd for PCI address `address` (e.g. "0000:00:03.0").
    public func device(address: String) throws -> FileDescriptor {
        let raw = try address.withCString { p in
            try vfioIoctl(fd, .groupGetDeviceFD, UnsafeMutableRawPointer(mutating: p))
        }
        // The kernel returns it without close-on-exec.
        _ = fcntl(raw, F_SETFD, FD_CLOEXEC)
        return FileDescriptor(rawValue: raw)
    }

    deinit { try? fd.close() }
}
