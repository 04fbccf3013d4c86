import CVirtioShim
import Glibc
import SystemPackage

/// VFIO ioctl request numbers. Every VFIO ioctl is `_IO(';', 100 + n)` —
/// no size or direction bits — and `_IO` does not import into Swift, so the
/// numbers are computed here from the kernel's definitions in <linux/vfio.h>.
enum VFIORequest: UInt8 {
    case getAPIVersion = 0, checkExtension, setIOMMU, groupGetStatus, groupSetContainer,
         groupUnsetContainer, groupGetDeviceFD, deviceGetInfo, deviceGetRegionInfo,
         deviceGetIRQInfo, deviceSetIRQs, deviceReset
    /// Container ioctls share numbers with the device's PCI hot-reset ones.
    case iommuGetInfo = 12, iommuMapDMA, iommuUnmapDMA

    var number: UInt { (UInt(0x3b) << 8) | UInt(100 + rawValue) }
}

/// The one place VFIO ioctls are issued: errno becomes a `SystemCallError`
/// that names the request.
func vfioIoctl(_ fd: FileDescriptor, _ request: VFIORequest, _ arg: UnsafeMutableRawPointer) throws -> CInt {
    let rc = ioctl(fd.rawValue, request.number, arg)
    guard rc >= 0 else { throw SystemCallError("VFIO ioctl \(request)") }
    return rc
}

func vfioIoctl(_ fd: FileDescriptor, _ request: VFIORequest, value: CInt) throws -> CInt {
    let rc = ioctl(fd.rawValue, request.number, value)
    guard rc >= 0 else { throw SystemCallError("VFIO ioctl \(request)") }
    return rc
}
