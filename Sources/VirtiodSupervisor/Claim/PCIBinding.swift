import FoundationEssentials
import Glibc
import SystemPackage
import VirtioPCI
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
    public func bindToVFIO(_ address: String) throws { try bind(address, to: "vfio-pci") }

    /// The driver that lends a device without an IOMMU when the kernel has
    /// no VFIO no-IOMMU mode.
    public static let uioDriver = "uio_pci_generic"

    /// Bind `address` to `driver` (vfio-pci, uio_pci_generic).
    public func bind(_ address: String, to driver: String) throws {
        if currentDriver(address) == driver { return }
        guard FileManager.default.fileExists(atPath: "\(sysfs)/bus/pci/drivers/\(driver)") else {
            throw ClaimError.binding("the \(driver) driver is not loaded (modprobe \(driver), or start virtiod through its unit, "
                                     + "which loads it)")
        }
        try write(devicePath(address) + "/driver_override", driver)
        if currentDriver(address) != nil { try write(devicePath(address) + "/driver/unbind", address) }
        try write("\(sysfs)/bus/pci/drivers_probe", address)
        guard currentDriver(address) == driver else {
            throw ClaimError.binding("\(driver) did not bind \(address) (driver now: \(currentDriver(address) ?? "none"))")
        }
    }

    /// Open what uio_pci_generic lends of `address`: /dev/uioN (waiting up
    /// to 5 s for udev to make it), sysfs `config`, and the `resourceN` of
    /// every BAR its virtio capabilities name.
    public func openUIO(_ address: String, dev: String = "/dev") throws -> UIOFunction {
        let uioDir = devicePath(address) + "/uio"
        guard let name = (try? FileManager.default.contentsOfDirectory(atPath: uioDir))?.first(where: { $0.hasPrefix("uio") }) else {
            throw ClaimError.binding("uio_pci_generic bound \(address) but made no uio device (\(uioDir))")
        }
        func open(_ path: String, _ options: FileDescriptor.OpenOptions = []) throws -> FileDescriptor {
            do { return try FileDescriptor.open(FilePath(path), .readWrite, options: options.union(.closeOnExec)) } catch {
                throw ClaimError.binding("open \(path): \(error)")
            }
        }
        var attempts = 0
        while !FileManager.default.fileExists(atPath: "\(dev)/\(name)") {
            attempts += 1
            guard attempts < 250 else { throw ClaimError.binding("\(dev)/\(name) did not appear within 5 s of binding uio_pci_generic") }
            usleep(20_000)
        }
        var opened: [FileDescriptor] = []
        do {
            let interrupt = try open("\(dev)/\(name)", .nonBlocking)
            opened.append(interrupt)
            let config = try open(devicePath(address) + "/config")
            opened.append(config)
            let probe = UIOFunction(config: config, bars: [:], interrupt: interrupt)
            let caps: VirtioPCICapabilities
            do { caps = try VirtioPCICapabilities.parse(config: probe.readPCIConfig()) } catch PCICapabilityError.missing(let what) {
                throw ClaimError.refused(ClaimChecks().legacyOnly(address, missing: what))
            }
            var bars: [Int: FileDescriptor] = [:]
            for bar in caps.bars.sorted() {
                bars[bar] = try open(devicePath(address) + "/resource\(bar)")
                opened.append(bars[bar]!)
            }
            return UIOFunction(config: config, bars: bars, interrupt: interrupt)
        } catch {
            for fd in opened { try? fd.close() }
            throw error
        }
    }

    /// Whether VFIO's no-IOMMU mode is usable: the kernel has it
    /// (CONFIG_VFIO_NOIOMMU; Debian's kernels do not) and this process may
    /// open its groups (CAP_SYS_RAWIO, which virtiod.service leaves out
    /// unless a drop-in adds it). Otherwise uio_pci_generic lends the device.
    public var hasVFIONoIOMMUMode: Bool {
        FileManager.default.fileExists(atPath: noIOMMUParameter) && Self.hasEffectiveCapability(17) // CAP_SYS_RAWIO
    }

    /// Whether capability `bit` is in this process's effective set (CapEff in /proc/self/status).
    static func hasEffectiveCapability(_ bit: Int) -> Bool {
        guard let status = TextFile.read("/proc/self/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(String(line.dropFirst(7)).trimmingWhitespace(), radix: 16) else { return false }
        return mask & (1 << UInt64(bit)) != 0
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
        if let d = currentDriver(address), d == "vfio-pci" || d == Self.uioDriver {
            try write(devicePath(address) + "/driver/unbind", address)
        }
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
