import FoundationEssentials
import Glibc
import VirtioSystem

/// Moves a PCI function between kernel drivers through sysfs
/// (Documentation/ABI/testing/sysfs-bus-pci: driver_override, unbind,
/// drivers_probe). Only the supervisor calls this, only for functions the
/// claim policy (or root through virtioctl) chose, and never on the
/// development machine's own devices.
public struct PCIBinding: Sendable {
    public var sysfs: String
    public init(sysfs: String = "/sys") { self.sysfs = sysfs }

    func devicePath(_ address: String) -> String { "\(sysfs)/bus/pci/devices/\(address)" }

    public func currentDriver(_ address: String) -> String? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: devicePath(address) + "/driver"))
            .map { String($0.split(separator: "/").last ?? "") }
    }

    /// Bind `address` to vfio-pci: set driver_override, unbind the current
    /// driver, re-probe. The module is loaded before virtiod starts (the
    /// unit wants modprobe@vfio_pci.service; virtiod itself may not load
    /// modules).
    public func bindToVFIO(_ address: String) throws {
        if currentDriver(address) == "vfio-pci" { return }
        guard FileManager.default.fileExists(atPath: "\(sysfs)/bus/pci/drivers/vfio-pci") else {
            throw ClaimError.binding("the vfio-pci driver is not loaded (modprobe vfio-pci, or start virtiod through its unit, "
                                     + "which loads it)")
        }
        try write(devicePath(address) + "/driver_override", "vfio-pci")
        if currentDriver(address) != nil { try write(devicePath(address) + "/driver/unbind", address) }
        try write("\(sysfs)/bus/pci/drivers_probe", address)
        guard currentDriver(address) == "vfio-pci" else {
            throw ClaimError.binding("vfio-pci did not bind \(address) (driver now: \(currentDriver(address) ?? "none"))")
        }
    }

    /// The IOMMU group of `address` (its iommu_group link), which vfio-pci
    /// makes for a device without an IOMMU when it binds it in no-IOMMU mode.
    public func iommuGroup(_ address: String) throws -> Int {
        let link = devicePath(address) + "/iommu_group"
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link),
              let n = target.split(separator: "/").last.flatMap({ Int($0) }) else {
            throw ClaimError.binding("\(address) has no IOMMU group after vfio-pci bound it (\(link))")
        }
        return n
    }

    /// vfio's module parameter enable_unsafe_noiommu_mode (CONFIG_VFIO_NOIOMMU).
    var noIOMMUParameter: String { "\(sysfs)/module/vfio/parameters/enable_unsafe_noiommu_mode" }

    /// Turn vfio's no-IOMMU mode on (before binding a device without an
    /// IOMMU, so vfio-pci makes it a no-IOMMU group); true if it was off.
    /// It stays on: it only concerns devices without an IOMMU, and others
    /// may be using it.
    public func enableNoIOMMUMode() throws -> Bool {
        guard let now = TextFile.read(noIOMMUParameter) else {
            throw ClaimError.refused("this kernel's VFIO has no no-IOMMU mode (\(noIOMMUParameter) is missing: CONFIG_VFIO_NOIOMMU)")
        }
        if now.trimmingWhitespace() == "Y" { return false }
        try write(noIOMMUParameter, "1")
        return true
    }

    /// Give `address` back: unbind vfio-pci, clear driver_override, re-probe
    /// so the kernel's own driver (virtio-pci) takes it again.
    public func giveBack(_ address: String) throws {
        guard FileManager.default.fileExists(atPath: devicePath(address)) else { return }
        if currentDriver(address) == "vfio-pci" { try write(devicePath(address) + "/driver/unbind", address) }
        try write(devicePath(address) + "/driver_override", "\n")
        try write("\(sysfs)/bus/pci/drivers_probe", address)
    }

    private func write(_ path: String, _ value: String) throws {
        do { try TextFile.writeAttribute(path, value) } catch {
            throw ClaimError.binding("write '\(value.trimmingWhitespace())' to \(path): \(error)")
        }
    }
}

public enum ClaimError: Error, CustomStringConvertible, Sendable {
    /// virtiod will not take the device; the text says why and what to do.
    case refused(String)
    case binding(String)
    case setup(String)

    public var description: String {
        switch self {
        case .refused(let s), .binding(let s), .setup(let s): s
        }
    }
}
