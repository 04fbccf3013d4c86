/// Where one virtio structure lives: a BAR, an offset in it and a length
/// (virtio 1.2 §4.1.4 "Virtio Structure PCI Capabilities", struct virtio_pci_cap).
public struct VirtioStructureLocation: Sendable, Hashable, Codable {
    public var bar: Int
    public var offset: Int
    public var length: Int
    public init(bar: Int, offset: Int, length: Int) {
        self.bar = bar
        self.offset = offset
        self.length = length
    }
}

public enum PCICapabilityError: Error, Equatable, CustomStringConvertible {
    case noCapabilityList
    case missing(String)
    case malformed(String)

    public var description: String {
        switch self {
        case .noCapabilityList: "device has no PCI capability list (status bit 4 clear)"
        case .missing(let s): "device lacks the virtio \(s) capability"
        case .malformed(let s): "malformed PCI capability: \(s)"
        }
    }
}

/// The virtio PCI capabilities of one function, parsed from its PCI
/// configuration space (virtio 1.2 §4.1.4): common, notify, ISR, device
/// config, plus the MSI-X table size (PCI 3.0 §6.8.2).
///
/// The bytes come from the device (through VFIO): every pointer and length is
/// checked, and the walk stops after 48 capabilities, so a looping list
/// cannot hang it.
public struct VirtioPCICapabilities: Sendable, Hashable, Codable {
    public var common: VirtioStructureLocation
    public var notify: VirtioStructureLocation
    public var notifyOffsetMultiplier: UInt32
    public var isr: VirtioStructureLocation
    /// Absent for devices with no device-specific configuration.
    public var device: VirtioStructureLocation?
    /// Offset of the PCI configuration access capability, if present.
    public var pciConfigAccess: Int?

    /// The BARs the virtio structures lie in (what a driver must map).
    public var bars: Set<Int> { Set([common.bar, notify.bar, isr.bar] + (device.map { [$0.bar] } ?? [])) }
    /// Vectors in the MSI-X table, 0 without MSI-X.
    public var msixTableSize: Int

    /// virtio_pci_cap cfg_type values (§4.1.4).
    enum ConfigType: UInt8 {
        case common = 1, notify = 2, isr = 3, device = 4, pciConfig = 5, sharedMemory = 8, vendor = 9
    }

    public static func parse(config: [UInt8]) throws(PCICapabilityError) -> VirtioPCICapabilities {
        guard config.count >= 0x40 else { throw .malformed("config space of \(config.count) bytes") }
        func u8(_ o: Int) throws(PCICapabilityError) -> UInt8 {
            guard o >= 0, o < config.count else { throw .malformed("read at 0x\(String(o, radix: 16)) beyond config space") }
            return config[o]
        }
        func u32(_ o: Int) throws(PCICapabilityError) -> UInt32 {
            var v: UInt32 = 0
            for i in (0..<4).reversed() { v = v << 8 | UInt32(try u8(o + i)) }
            return v
        }
        let status = UInt16(try u8(6)) | UInt16(try u8(7)) << 8
        guard status & 0x10 != 0 else { throw .noCapabilityList }

        var common: VirtioStructureLocation?, notify: VirtioStructureLocation?, isr: VirtioStructureLocation?
        var device: VirtioStructureLocation?, pciCfg: Int?
        var multiplier: UInt32 = 0
        var msix = 0
        var pointer = Int(try u8(0x34)) & ~3
        var visited = 0
        while pointer != 0 {
            guard pointer >= 0x40 else { throw .malformed("capability pointer 0x\(String(pointer, radix: 16)) in the header") }
            visited += 1
            guard visited <= 48 else { throw .malformed("capability list longer than 48 entries (a loop?)") }
            let id = try u8(pointer)
            let next = Int(try u8(pointer + 1)) & ~3
            switch id {
            case 0x11: // MSI-X: Message Control at +2, table size - 1 in bits 0..10
                let control = UInt16(try u8(pointer + 2)) | UInt16(try u8(pointer + 3)) << 8
                msix = Int(control & 0x7ff) + 1
            case 0x09: // vendor specific: struct virtio_pci_cap
                let capLength = Int(try u8(pointer + 2))
                guard capLength >= 16 else { throw .malformed("virtio capability at 0x\(String(pointer, radix: 16)) of length \(capLength)") }
                let type = try u8(pointer + 3)
                let bar = Int(try u8(pointer + 4))
                let location = VirtioStructureLocation(bar: bar, offset: Int(try u32(pointer + 8)), length: Int(try u32(pointer + 12)))
                // Only the first capability of each type is used (§4.1.4: the
                // driver should use the first one it can).
                switch ConfigType(rawValue: type) {
                case .common: if common == nil { common = try checked(location) }
                case .notify:
                    if notify == nil {
                        guard capLength >= 20 else { throw .malformed("notify capability of length \(capLength)") }
                        notify = try checked(location)
                        multiplier = try u32(pointer + 16)
                    }
                case .isr: if isr == nil { isr = try checked(location) }
                case .device: if device == nil { device = try checked(location) }
                case .pciConfig: if pciCfg == nil { pciCfg = pointer }
                default: break
                }
            default: break
            }
            pointer = next
        }
        guard let common else { throw .missing("common configuration") }
        guard let notify else { throw .missing("notification") }
        guard let isr else { throw .missing("ISR status") }
        guard common.length >= CommonConfig.minimumLength else {
            throw .malformed("common configuration of \(common.length) bytes (needs \(CommonConfig.minimumLength))")
        }
        return VirtioPCICapabilities(common: common, notify: notify, notifyOffsetMultiplier: multiplier, isr: isr,
                                     device: device, pciConfigAccess: pciCfg, msixTableSize: msix)
    }

    private static func checked(_ l: VirtioStructureLocation) throws(PCICapabilityError) -> VirtioStructureLocation {
        guard (0...5).contains(l.bar) else { throw .malformed("virtio structure in BAR \(l.bar)") }
        guard l.offset >= 0, l.length >= 0, l.offset + l.length <= 1 << 32 else {
            throw .malformed("virtio structure at \(l.offset)+\(l.length)")
        }
        return l
    }
}
