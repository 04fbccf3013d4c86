/// Device status field (virtio 1.2 §2.1 "Device Status Field").
public struct DeviceStatus: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let acknowledge = DeviceStatus(rawValue: 1)
    public static let driver = DeviceStatus(rawValue: 2)
    public static let driverOK = DeviceStatus(rawValue: 4)
    public static let featuresOK = DeviceStatus(rawValue: 8)
    public static let deviceNeedsReset = DeviceStatus(rawValue: 64)
    public static let failed = DeviceStatus(rawValue: 128)

    static let names: [(DeviceStatus, String)] = [
        (.acknowledge, "ACKNOWLEDGE"), (.driver, "DRIVER"), (.driverOK, "DRIVER_OK"),
        (.featuresOK, "FEATURES_OK"), (.deviceNeedsReset, "DEVICE_NEEDS_RESET"), (.failed, "FAILED"),
    ]

    /// Names of the set bits, in spec order ("reset" when none is set).
    public var names: [String] {
        let known = Self.names.filter { contains($0.0) }.map(\.1)
        let rest = rawValue & ~Self.names.reduce(0) { $0 | $1.0.rawValue }
        let unknown = (0..<8).filter { rest & (1 << $0) != 0 }.map { "bit\($0)" }
        return known + unknown
    }

    public var description: String { rawValue == 0 ? "reset" : names.joined(separator: "|") }
}
