import FoundationEssentials

/// Finds virtio PCI functions through sd-device (udev's view of sysfs).
/// Read-only: it never binds, unbinds or writes anything.
public enum Discovery {
    public static func virtioFunctions() throws -> [VirtioFunction] {
        let pci = try SDDeviceQuery(subsystems: ["pci"], attributes: [("vendor", "0x1af4")], includeUninitialized: true).devices()
        return try pci.compactMap { try function(for: $0) }.sorted { $0.address < $1.address }
    }

    static func function(for dev: SDDevice) throws -> VirtioFunction? {
        let syspath = dev.syspath
        let fm = FileManager.default
        let group = (try? fm.destinationOfSymbolicLink(atPath: syspath + "/iommu_group"))
            .flatMap { Int($0.split(separator: "/").last ?? "") }
        let members = (try? fm.contentsOfDirectory(atPath: syspath + "/iommu_group/devices")) ?? []
        // Kernel-made interfaces below the function (virtioN/net/IF, virtioN/block/vdX).
        let children = (try? SDDeviceQuery(subsystems: ["net", "block"], parent: dev, includeUninitialized: true).devices()) ?? []
        let interfaces = children.filter { $0.subsystem == "net" }.map(\.sysname)
        let blocks = children.filter { $0.subsystem == "block" && $0.attribute("partition") == nil }.map(\.sysname)
        return VirtioFunction(address: dev.sysname, vendor: dev.attribute("vendor"), device: dev.attribute("device"),
                              subsystemDevice: dev.attribute("subsystem_device"), driver: dev.driver,
                              iommuGroup: group, iommuGroupMembers: members, numaNode: dev.attribute("numa_node"),
                              interfaces: interfaces, blockDevices: blocks)
    }
}
