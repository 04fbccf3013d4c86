import SystemPackage

/// One PCI function as userspace reaches it — its configuration space, its
/// BARs and its legacy interrupt line — whichever kernel driver lends it:
/// vfio-pci (`VFIODevice`) or, on machines without an IOMMU whose kernel has
/// no VFIO no-IOMMU mode, uio_pci_generic (`UIOFunction`). The virtio
/// transport needs nothing else.
public protocol PCIFunction: Sendable {
    /// The first 256 bytes of configuration space.
    func readPCIConfig() throws -> [UInt8]
    /// BAR `index`, mapped where the kernel allows it.
    func barRegion(_ index: Int) throws -> MMIORegion
    /// Let the INTx line fire again after the driver acknowledged the device.
    func unmaskINTx() throws
}

extension VFIODevice: PCIFunction {
    public func barRegion(_ index: Int) throws -> MMIORegion {
        try MMIORegion(device: self, info: region(UInt32(index)))
    }
}
