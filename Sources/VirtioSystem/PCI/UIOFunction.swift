import Glibc
import SystemPackage

/// A PCI function bound to uio_pci_generic (Documentation/driver-api/uio-howto.rst,
/// "Generic PCI UIO driver"): configuration space and BARs through sysfs
/// (`config`, `resourceN`; Documentation/PCI/sysfs-pci.rst), the INTx line
/// through /dev/uioN. There is no IOMMU behind it and no MSI-X: the device
/// reaches guest-physical addresses and interrupts on its one legacy line,
/// which the kernel masks when it fires (INTx disable bit) until told
/// otherwise.
///
/// The fds are opened by the supervisor (root) and lent to plugins; reading
/// all of configuration space needs CAP_SYS_ADMIN at open time, which the
/// supervisor has.
public struct UIOFunction: PCIFunction {
    /// sysfs `config` (read and written with pread/pwrite).
    public let config: FileDescriptor
    /// sysfs `resourceN` of each BAR the driver uses, by BAR number.
    public let bars: [Int: FileDescriptor]
    /// /dev/uioN: reads return the interrupt count, a write of 1 unmasks.
    public let interrupt: FileDescriptor

    public init(config: FileDescriptor, bars: [Int: FileDescriptor], interrupt: FileDescriptor) {
        self.config = config
        self.bars = bars
        self.interrupt = interrupt
    }

    /// Every fd, closed by whoever owns them.
    public var fds: [FileDescriptor] { [config, interrupt] + bars.keys.sorted().map { bars[$0]! } }

    public func readPCIConfig() throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 256)
        let n = try bytes.withUnsafeMutableBytes { try config.read(fromAbsoluteOffset: 0, into: $0) }
        guard n >= 64 else { throw SystemCallError("PCI config: \(n) bytes read", .ioError) }
        return Array(bytes.prefix(n))
    }

    public func barRegion(_ index: Int) throws -> MMIORegion {
        guard let fd = bars[index] else { throw SystemCallError("BAR \(index) was not lent (no resource\(index) fd)", .badFileDescriptor) }
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0, st.st_size > 0 else { throw SystemCallError("fstat resource\(index)") }
        return try MMIORegion(fd: fd, fileOffset: 0, size: Int(st.st_size), index: index, mappable: true)
    }

    public func unmaskINTx() throws {
        var one: Int32 = 1
        let n = try withUnsafeBytes(of: &one) { try interrupt.write($0) }
        guard n == 4 else { throw SystemCallError("uio unmask: short write", .ioError) }
    }

    /// Interrupts so far (the 4-byte count a read of /dev/uioN returns).
    public func consumeInterrupt() throws -> UInt32 {
        var count: UInt32 = 0
        let n = try withUnsafeMutableBytes(of: &count) { try interrupt.read(into: $0) }
        guard n == 4 else { throw SystemCallError("uio read: \(n) bytes", .ioError) }
        return count
    }

    /// Set Memory Space and Bus Master in the command register (PCI 3.0
    /// §6.2.2): uio_pci_generic enables the device but not bus mastering.
    /// The INTx disable bit is the kernel's to manage, and is kept.
    public func enableBusMaster() throws {
        var command: UInt16 = 0
        _ = try withUnsafeMutableBytes(of: &command) { try config.read(fromAbsoluteOffset: 4, into: $0) }
        var le = (UInt16(littleEndian: command) | 0x6).littleEndian
        let n = try withUnsafeBytes(of: &le) { try config.write(toAbsoluteOffset: 4, $0) }
        guard n == 2 else { throw SystemCallError("PCI command register: short write", .ioError) }
    }

    /// Clear Bus Master (the device may DMA no more), before it is given back.
    public func disableBusMaster() throws {
        var command: UInt16 = 0
        _ = try withUnsafeMutableBytes(of: &command) { try config.read(fromAbsoluteOffset: 4, into: $0) }
        var le = (UInt16(littleEndian: command) & ~0x4).littleEndian
        _ = try withUnsafeBytes(of: &le) { try config.write(toAbsoluteOffset: 4, $0) }
    }
}
