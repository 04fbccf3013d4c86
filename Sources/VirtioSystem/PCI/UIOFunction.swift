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

    public func readConfig(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try config.read(fromAbsoluteOffset: Int64(offset), into: buffer)
    }

    public func writeConfig(at offset: Int, from buffer: UnsafeRawBufferPointer) throws -> Int {
        try config.write(toAbsoluteOffset: Int64(offset), buffer)
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

    /// Interrupts so far (the 4-byte count a read of /dev/uioN returns).
    public func consumeInterrupt() throws -> UInt32 {
        var count: UInt32 = 0
        let n = try withUnsafeMutableBytes(of: &count) { try interrupt.read(into: $0) }
        guard n == 4 else { throw SystemCallError("uio read: \(n) bytes", .ioError) }
        return count
    }
}
