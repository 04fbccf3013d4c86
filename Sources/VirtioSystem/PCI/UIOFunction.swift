import Glibc
import SystemPackage

/// A PCI function bound to uio_pci_generic (Documentation/driver-api/uio-howto.rst,
/// "Generic PCI UIO driver"): configuration space and BARs through sysfs
/// (`config`, `resourceN`; Documentation/PCI/sysfs-pci.rst), the INTx line
/// through /dev/uioN. There is no IOMMU behind it and no MSI-X: the device
/// reaches guest-physical addresses and interrupts on its one legacy line,
/// which the kernel masks when it fires (the command register's Interrupt
/// Disable bit) until the driver clears the bit again.
///
/// The fds are opened by the supervisor (root) and lent to plugins; reading
/// all of configuration space needs CAP_SYS_ADMIN at open time, which the
/// supervisor has.
public struct UIOFunction: PCIFunction {
    /// sysfs `config` (read and written with pread/pwrite).
    public let config: FileDescriptor
    /// sysfs `resourceN` of each BAR the driver uses, by BAR number.
    public let bars: [Int: FileDescriptor]
    /// /dev/uioN: readable when the line fired; a read returns the count.
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

    /// uio_pci_generic has no irqcontrol: its handler masks the line with
    /// the command register's Interrupt Disable bit (PCI 3.0 §6.2.2, bit
    /// 10), and the driver clears that bit again through `config`.
    public func unmaskINTx() throws {
        try updateCommand { $0 & ~0x400 }
    }

    /// Read-modify-write the command register (config offset 4).
    private func updateCommand(_ change: (UInt16) -> UInt16) throws {
        var command: UInt16 = 0
        let r = try withUnsafeMutableBytes(of: &command) { try config.read(fromAbsoluteOffset: 4, into: $0) }
        guard r == 2 else { throw SystemCallError("PCI command register: short read", .ioError) }
        var le = change(UInt16(littleEndian: command)).littleEndian
        let n = try withUnsafeBytes(of: &le) { try config.write(toAbsoluteOffset: 4, $0) }
        guard n == 2 else { throw SystemCallError("PCI command register: short write", .ioError) }
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
        try updateCommand { $0 | 0x6 }
    }

    /// Clear Bus Master (the device may DMA no more), before it is given back.
    public func disableBusMaster() throws {
        try updateCommand { $0 & ~0x4 }
    }
}
