import VirtioCore

/// A virtio PCI function as discovery sees it (virtio 1.2 §4.1.2 PCI device
/// discovery). Read-only facts: nothing here changes the device.
public struct VirtioFunction: Codable, Sendable, Hashable {
    /// Who drives the function right now.
    public enum Owner: String, Codable, Sendable {
        /// A kernel driver (virtio-pci): the machine uses it; never take it unasked.
        case kernel
        /// vfio-pci: ready for (or held by) a userspace driver such as virtiod.
        case vfio
        /// uio_pci_generic: held by a userspace driver on a machine without an IOMMU.
        case uio
        /// No driver bound.
        case none
        /// Some other driver.
        case other
    }

    public var address: String
    public var vendorID: UInt16
    public var deviceID: UInt16
    public var subsystemDeviceID: UInt16?
    /// Virtio device type name ("net", "block", …), nil if the type is unknown.
    public var type: String?
    public var typeID: UInt32?
    public var transitional: Bool
    public var driver: String?
    public var owner: Owner
    public var iommuGroup: Int?
    /// Other functions in the same IOMMU group (VFIO can only take a whole group).
    public var iommuGroupPeers: [String]
    public var numaNode: Int?
    /// Network interfaces the kernel made for it (when a kernel driver holds it).
    public var interfaces: [String]
    /// Block devices the kernel made for it.
    public var blockDevices: [String]

    /// Build from sysfs attribute strings ("0x1af4"); nil if not a virtio function.
    public init?(address: String, vendor: String?, device: String?, subsystemDevice: String?, driver: String?,
                 iommuGroup: Int?, iommuGroupMembers: [String], numaNode: String?,
                 interfaces: [String] = [], blockDevices: [String] = []) {
        guard let v = vendor.flatMap(Self.hex), let d = device.flatMap(Self.hex) else { return nil }
        let sub = subsystemDevice.flatMap(Self.hex)
        guard VirtioPCIID.vendor == v, VirtioPCIID.modernRange.contains(d) || VirtioPCIID.transitionalRange.contains(d) else {
            return nil
        }
        let t = VirtioPCIID.deviceType(vendor: v, device: d, subsystemDevice: sub)
        self.address = address
        self.vendorID = v
        self.deviceID = d
        self.subsystemDeviceID = sub
        self.type = t?.description
        self.typeID = t?.rawValue ?? (VirtioPCIID.modernRange.contains(d) ? UInt32(d - 0x1040) : sub.map(UInt32.init))
        self.transitional = VirtioPCIID.isTransitional(device: d)
        self.driver = driver
        switch driver {
        case nil: owner = .none
        case "virtio-pci": owner = .kernel
        case "vfio-pci": owner = .vfio
        case "uio_pci_generic": owner = .uio
        default: owner = .other
        }
        self.iommuGroup = iommuGroup
        self.iommuGroupPeers = iommuGroupMembers.filter { $0 != address }.sorted()
        self.numaNode = numaNode.flatMap { Int($0) }.flatMap { $0 < 0 ? nil : $0 }
        self.interfaces = interfaces.sorted()
        self.blockDevices = blockDevices.sorted()
    }

    static func hex(_ s: String) -> UInt16? {
        let t = s.hasPrefix("0x") ? s.dropFirst(2) : Substring(s)
        return UInt16(t, radix: 16)
    }
}
