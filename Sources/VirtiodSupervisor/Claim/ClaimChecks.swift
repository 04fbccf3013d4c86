import FoundationEssentials
import Glibc
import VirtioCore
import VirtioSystem

/// The checks before virtiod takes a device from the kernel: each returns a
/// refusal that says why and what to do, or nil.
public struct ClaimChecks: Sendable {
    public var procRoot = "/proc"
    public var sysfs = "/sys"
    public init() {}

    /// VFIO hands out whole IOMMU groups; taking one member would take the
    /// others. A function in no group (no IOMMU) is only taken with
    /// `noIOMMU` (the `[Service]` setting), through vfio's no-IOMMU mode.
    public func groupPeers(_ f: VirtioFunction, noIOMMU: Bool = false) -> String? {
        guard f.iommuGroup != nil else {
            if noIOMMU { return nil }
            return "\(f.address) is in no IOMMU group: VFIO needs an IOMMU (boot with intel_iommu=on or amd_iommu=on), "
                + "or set UnsafeNoIOMMU=yes in the [Service] section of /etc/virtiod/virtiod.conf to drive it without one "
                + "(DMA at guest-physical addresses in hugepages, no isolation; see virtiod.conf(5))"
        }
        guard f.iommuGroupPeers.isEmpty else {
            return "IOMMU group \(f.iommuGroup!) of \(f.address) also holds \(f.iommuGroupPeers.joined(separator: ", ")); "
                + "VFIO can only take the whole group. Put the device behind its own PCIe root port or ACS-capable switch"
        }
        return nil
    }

    /// ACCESS_PLATFORM (virtio 1.2 §6.1 bit 33): without it the device DMAs
    /// to physical addresses, bypassing the IOMMU that VFIO programs. In
    /// no-IOMMU mode (`physicalDMA`) that is what virtiod gives it, and only
    /// VERSION_1 is needed.
    public func accessPlatform(offered: UInt64, address: String, physicalDMA: Bool = false) -> String? {
        if physicalDMA {
            guard offered & TransportFeatures.version1.rawValue == 0 else { return nil }
            return "\(address) does not offer VERSION_1: virtiod drives modern and transitional devices (virtio 1.x), "
                + "not legacy-only ones (virtio 0.9.5); start it without disable-modern=on"
        }
        let bit = TransportFeatures.accessPlatform.rawValue
        if offered & bit != 0, offered & TransportFeatures.version1.rawValue != 0 { return nil }
        let missing = [offered & bit == 0 ? "ACCESS_PLATFORM" : nil,
                       offered & TransportFeatures.version1.rawValue == 0 ? "VERSION_1" : nil].compactMap { $0 }
        return "\(address) does not offer \(missing.joined(separator: " and ")): its DMA would bypass the IOMMU and "
            + "corrupt memory. Start the device with iommu_platform=on (QEMU) or use a modern device"
            + (offered & TransportFeatures.version1.rawValue != 0
               ? ", or set UnsafeNoIOMMU=yes in [Service] to drive it at guest-physical addresses (no DMA isolation)" : "")
    }

    /// A device without the virtio PCI capabilities (virtio 1.2 §4.1.4) —
    /// `missing` names the first one not found — is legacy-only (virtio
    /// 0.9.5: registers in an I/O BAR, split rings only). virtiod does not
    /// drive those: every device QEMU and clouds offer today is modern or
    /// transitional, and transitional ones work.
    public func legacyOnly(_ address: String, missing: String) -> String {
        "\(address) has no virtio \(missing) capability: a legacy-only device (virtio 0.9.5). "
            + "virtiod drives modern and transitional devices (virtio 1.x); start it without disable-modern=on"
    }

    /// Filesystems mounted (or swap) on the function's disks.
    public func mountedFilesystems(_ f: VirtioFunction) -> String? {
        guard !f.blockDevices.isEmpty else { return nil }
        var numbers: [String: String] = [:] // "major:minor" -> name
        for disk in f.blockDevices {
            let base = "\(sysfs)/class/block/\(disk)"
            if let dev = read(base + "/dev") { numbers[dev] = disk }
            for part in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where part.hasPrefix(disk) {
                if let dev = read("\(base)/\(part)/dev") { numbers[dev] = part }
            }
        }
        var uses: [String] = []
        for line in (read("\(procRoot)/self/mountinfo") ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, let name = numbers[String(fields[2])] else { continue }
            uses.append("/dev/\(name) on \(fields[4])")
        }
        for line in (read("\(procRoot)/swaps") ?? "").split(separator: "\n").dropFirst() {
            let dev = line.split(separator: " ").first.map(String.init) ?? ""
            if numbers.values.contains(where: { dev == "/dev/\($0)" }) { uses.append("\(dev) as swap") }
        }
        guard !uses.isEmpty else { return nil }
        return "\(f.address) backs \(uses.joined(separator: ", ")); taking it would pull the disk out from under them. "
            + "Unmount first, or set Force=yes (virtioctl claim --force) if you mean it"
    }

    /// The function's interfaces that carry the default route (IPv4 or IPv6).
    public func defaultRoute(_ f: VirtioFunction) -> String? {
        guard !f.interfaces.isEmpty else { return nil }
        var carrying: Set<String> = []
        for line in (read("\(procRoot)/net/route") ?? "").split(separator: "\n").dropFirst() {
            let c = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            if c.count > 2, c[1] == "00000000", f.interfaces.contains(String(c[0])) { carrying.insert(String(c[0])) }
        }
        for line in (read("\(procRoot)/net/ipv6_route") ?? "").split(separator: "\n") {
            let c = line.split(separator: " ")
            if c.count >= 10, c[0] == "00000000000000000000000000000000", c[1] == "00",
               f.interfaces.contains(String(c[9])) { carrying.insert(String(c[9])) }
        }
        guard !carrying.isEmpty else { return nil }
        return "\(f.address) carries the default route (\(carrying.sorted().joined(separator: ", "))); taking it would cut "
            + "this machine off the network. Move the route first, or set Force=yes (virtioctl claim --force)"
    }

    private func read(_ path: String) -> String? { TextFile.read(path) }
}
