/// Virtio device types (virtio 1.2 §5 "Device Types", table in §5).
public enum DeviceType: UInt32, Sendable, CaseIterable, CustomStringConvertible, Codable {
    case network = 1
    case block = 2
    case console = 3
    case entropy = 4
    case balloon = 5
    case scsi = 8
    case ninePTransport = 9
    case gpu = 16
    case input = 18
    case vsock = 19
    case crypto = 20
    case iommu = 23
    case memory = 24
    case sound = 25
    case fileSystem = 26

    /// Short name used in logs, configuration and `--json` ("net", "block", …).
    public var description: String {
        switch self {
        case .network: "net"
        case .block: "block"
        case .console: "console"
        case .entropy: "rng"
        case .balloon: "balloon"
        case .scsi: "scsi"
        case .ninePTransport: "9p"
        case .gpu: "gpu"
        case .input: "input"
        case .vsock: "vsock"
        case .crypto: "crypto"
        case .iommu: "iommu"
        case .memory: "mem"
        case .sound: "sound"
        case .fileSystem: "fs"
        }
    }

    public init?(name: String) {
        guard let t = DeviceType.allCases.first(where: { $0.description == name }) else { return nil }
        self = t
    }
}

/// PCI identification of virtio functions (virtio 1.2 §4.1.2 "PCI Device Discovery").
public enum VirtioPCIID {
    public static let vendor: UInt16 = 0x1af4
    /// Modern (virtio 1.0+) device IDs are 0x1040 + device type.
    public static let modernRange: ClosedRange<UInt16> = 0x1040...0x107f
    /// Transitional device IDs (§4.1.2.3) carry the type in the subsystem ID.
    public static let transitionalRange: ClosedRange<UInt16> = 0x1000...0x103f

    /// Device type of a PCI function, or nil if it is not a virtio device.
    /// `subsystemDevice` is only consulted for transitional IDs.
    public static func deviceType(vendor: UInt16, device: UInt16, subsystemDevice: UInt16? = nil) -> DeviceType? {
        guard vendor == Self.vendor else { return nil }
        if modernRange.contains(device) {
            return DeviceType(rawValue: UInt32(device - 0x1040))
        }
        if transitionalRange.contains(device) {
            // §4.1.2.3: transitional IDs map to fixed types; the subsystem ID repeats it.
            let fixed: [UInt16: DeviceType] = [
                0x1000: .network, 0x1001: .block, 0x1002: .balloon, 0x1003: .console,
                0x1004: .scsi, 0x1005: .entropy, 0x1009: .ninePTransport,
            ]
            if let t = fixed[device] { return t }
            if let s = subsystemDevice { return DeviceType(rawValue: UInt32(s)) }
        }
        return nil
    }

    public static func isTransitional(device: UInt16) -> Bool { transitionalRange.contains(device) }
}
