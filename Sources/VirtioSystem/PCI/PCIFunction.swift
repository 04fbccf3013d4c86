import SystemPackage

/// One PCI function as userspace reaches it — its configuration space, its
/// BARs and its legacy interrupt line — whichever kernel driver lends it:
/// vfio-pci (`VFIODevice`) or, on machines without an IOMMU whose kernel has
/// no VFIO no-IOMMU mode, uio_pci_generic (`UIOFunction`). The virtio
/// transport needs nothing else.
public protocol PCIFunction: Sendable {
    /// Read configuration space from `offset` into `buffer`; the bytes read
    /// (fewer at its end).
    func readConfig(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Write `buffer` to configuration space at `offset`; the bytes written.
    func writeConfig(at offset: Int, from buffer: UnsafeRawBufferPointer) throws -> Int
    /// BAR `index`, mapped where the kernel allows it.
    func barRegion(_ index: Int) throws -> MMIORegion
    /// Let the INTx line fire again after the driver acknowledged the device.
    func unmaskINTx() throws
}

extension PCIFunction {
    /// The first 256 bytes of configuration space (at least the 64-byte header).
    public func readPCIConfig() throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 256)
        let n = try bytes.withUnsafeMutableBytes { try readConfig(at: 0, into: $0) }
        guard n >= 64 else { throw SystemCallError("PCI config: \(n) bytes read", .ioError) }
        return Array(bytes.prefix(n))
    }

    /// Read-modify-write the command register (PCI 3.0 §6.2.2, config offset 4).
    public func updateCommand(_ change: (UInt16) -> UInt16) throws {
        var command: UInt16 = 0
        let r = try withUnsafeMutableBytes(of: &command) { try readConfig(at: 4, into: $0) }
        guard r == 2 else { throw SystemCallError("PCI command register: short read", .ioError) }
        var le = change(UInt16(littleEndian: command)).littleEndian
        let n = try withUnsafeBytes(of: &le) { try writeConfig(at: 4, from: $0) }
        guard n == 2 else { throw SystemCallError("PCI command register: short write", .ioError) }
    }

    /// Set Memory Space and Bus Master, so BARs decode and the device may DMA.
    public func enableBusMaster() throws { try updateCommand { $0 | 0x6 } }

    /// Clear Bus Master: the device may DMA no more.
    public func disableBusMaster() throws { try updateCommand { $0 & ~0x4 } }
}

extension VFIODevice: PCIFunction {
    public func readConfig(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let config = try region(Self.configRegionIndex)
        let count = max(0, min(buffer.count, Int(config.size) - offset))
        try read(region: config, offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]))
        return count
    }

    public func writeConfig(at offset: Int, from buffer: UnsafeRawBufferPointer) throws -> Int {
        try write(region: region(Self.configRegionIndex), offset: offset, from: buffer)
        return buffer.count
    }

    public func barRegion(_ index: Int) throws -> MMIORegion {
        try MMIORegion(device: self, info: region(UInt32(index)))
    }
}
