import VirtioCore

/// A device that is only a config space (and one idle queue): for testing
/// the readers of device-specific config layouts (virtio 1.2 §5.x.4),
/// including config spaces that lie.
public final class ConfigSpaceModel: SoftDeviceModel, @unchecked Sendable {
    public let deviceType: DeviceType
    public let deviceFeatures: UInt64
    public let queueSizes = [8]
    let bytes: [UInt8]

    public init(_ type: DeviceType, features: UInt64, config: [UInt8]) {
        deviceType = type
        deviceFeatures = features | TransportFeatures.version1.rawValue
        bytes = config
    }

    public func config() -> [UInt8] { bytes }
    public func service(queue index: Int, queues: [DeviceQueue?]) -> [Int] { [] }

    /// A software device with this config space, for `Transport.readConfig`.
    public static func device(_ type: DeviceType, features: UInt64, config: [UInt8]) -> SoftDevice {
        SoftDevice(model: ConfigSpaceModel(type, features: features, config: config), region: DMARegion(anonymousSize: 4096))
    }

    /// `v` as `n` little-endian bytes.
    public static func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}
