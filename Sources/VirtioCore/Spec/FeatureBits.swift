/// A typed set of virtio feature bits with a name for every defined bit,
/// for logs and `--json`. Feature bits: virtio 1.2 §2.2; bits 0–23 and 50–127
/// are device-specific, bits 24–41 are reserved for the transport/ring (§6).
public protocol FeatureBits: OptionSet, Sendable, Hashable where RawValue == UInt64 {
    /// (bit number, spec name without the VIRTIO_*_F_ prefix).
    static var bitNames: [(bit: Int, name: String)] { get }
}

extension FeatureBits {
    public init(bit: Int) { self.init(rawValue: 1 << UInt64(bit)) }

    /// Names of the set bits this set knows.
    public var names: [String] {
        Self.bitNames.filter { rawValue & (1 << UInt64($0.bit)) != 0 }.map(\.name)
    }

    /// All bits this set has a name for.
    public static var known: Self {
        Self(rawValue: bitNames.reduce(0) { $0 | (1 << UInt64($1.bit)) })
    }
}

/// Transport and ring feature bits (virtio 1.2 §6 "Reserved Feature Bits").
public struct TransportFeatures: FeatureBits {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let indirectDescriptors = Self(bit: 28)
    public static let eventIndex = Self(bit: 29)
    public static let version1 = Self(bit: 32)
    public static let accessPlatform = Self(bit: 33)
    public static let ringPacked = Self(bit: 34)
    public static let inOrder = Self(bit: 35)
    public static let orderPlatform = Self(bit: 36)
    public static let srIOV = Self(bit: 37)
    public static let notificationData = Self(bit: 38)
    public static let notifConfigData = Self(bit: 39)
    public static let ringReset = Self(bit: 40)
    public static let adminVirtqueue = Self(bit: 41)

    public static let bitNames: [(bit: Int, name: String)] = [
        (28, "RING_INDIRECT_DESC"), (29, "RING_EVENT_IDX"), (32, "VERSION_1"),
        (33, "ACCESS_PLATFORM"), (34, "RING_PACKED"), (35, "IN_ORDER"), (36, "ORDER_PLATFORM"),
        (37, "SR_IOV"), (38, "NOTIFICATION_DATA"), (39, "NOTIF_CONFIG_DATA"), (40, "RING_RESET"),
        (41, "ADMIN_VQ"),
    ]
}

/// virtio-net feature bits (virtio 1.2 §5.1.3).
public struct NetFeatures: FeatureBits {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let csum = Self(bit: 0)
    public static let guestCsum = Self(bit: 1)
    public static let ctrlGuestOffloads = Self(bit: 2)
    public static let mtu = Self(bit: 3)
    public static let mac = Self(bit: 5)
    public static let guestTSO4 = Self(bit: 7)
    public static let guestTSO6 = Self(bit: 8)
    public static let guestECN = Self(bit: 9)
    public static let guestUFO = Self(bit: 10)
    public static let hostTSO4 = Self(bit: 11)
    public static let hostTSO6 = Self(bit: 12)
    public static let hostECN = Self(bit: 13)
    public static let hostUFO = Self(bit: 14)
    public static let mergeableRxBuffers = Self(bit: 15)
    public static let status = Self(bit: 16)
    public static let controlVirtqueue = Self(bit: 17)
    public static let controlRx = Self(bit: 18)
    public static let controlVLAN = Self(bit: 19)
    public static let controlRxExtra = Self(bit: 20)
    public static let guestAnnounce = Self(bit: 21)
    public static let multiqueue = Self(bit: 22)
    public static let controlMACAddress = Self(bit: 23)
    public static let guestUSO4 = Self(bit: 54)
    public static let guestUSO6 = Self(bit: 55)
    public static let hostUSO = Self(bit: 56)
    public static let hashReport = Self(bit: 57)
    public static let guestHeaderLength = Self(bit: 59)
    public static let rss = Self(bit: 60)
    public static let rscExt = Self(bit: 61)
    public static let standby = Self(bit: 62)
    public static let speedDuplex = Self(bit: 63)

    /// Feature dependencies a driver must respect (virtio 1.2 §5.1.3.1; ECN is
    /// tied to TSO4 here, a little stricter than "TSO4 or TSO6").
    public static let dependencies: [(feature: UInt64, needs: UInt64)] = [
        (guestTSO4.rawValue, guestCsum.rawValue), (guestTSO6.rawValue, guestCsum.rawValue),
        (guestECN.rawValue, guestTSO4.rawValue), (guestUFO.rawValue, guestCsum.rawValue),
        (hostTSO4.rawValue, csum.rawValue), (hostTSO6.rawValue, csum.rawValue),
        (hostECN.rawValue, hostTSO4.rawValue), (hostUFO.rawValue, csum.rawValue),
        (guestUSO4.rawValue, guestCsum.rawValue), (guestUSO6.rawValue, guestCsum.rawValue), (hostUSO.rawValue, csum.rawValue),
        (controlRx.rawValue, controlVirtqueue.rawValue), (controlVLAN.rawValue, controlVirtqueue.rawValue),
        (guestAnnounce.rawValue, controlVirtqueue.rawValue), (multiqueue.rawValue, controlVirtqueue.rawValue),
        (controlMACAddress.rawValue, controlVirtqueue.rawValue),
    ]

    public static let bitNames: [(bit: Int, name: String)] = [
        (0, "CSUM"), (1, "GUEST_CSUM"), (2, "CTRL_GUEST_OFFLOADS"), (3, "MTU"), (5, "MAC"),
        (7, "GUEST_TSO4"), (8, "GUEST_TSO6"), (9, "GUEST_ECN"), (10, "GUEST_UFO"),
        (11, "HOST_TSO4"), (12, "HOST_TSO6"), (13, "HOST_ECN"), (14, "HOST_UFO"),
        (15, "MRG_RXBUF"), (16, "STATUS"), (17, "CTRL_VQ"), (18, "CTRL_RX"), (19, "CTRL_VLAN"),
        (20, "CTRL_RX_EXTRA"), (21, "GUEST_ANNOUNCE"), (22, "MQ"), (23, "CTRL_MAC_ADDR"),
        (54, "GUEST_USO4"), (55, "GUEST_USO6"), (56, "HOST_USO"), (57, "HASH_REPORT"),
        (59, "GUEST_HDRLEN"), (60, "RSS"), (61, "RSC_EXT"), (62, "STANDBY"), (63, "SPEED_DUPLEX"),
    ]
}

/// virtio-blk feature bits (virtio 1.2 §5.2.3).
public struct BlockFeatures: FeatureBits {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let sizeMax = Self(bit: 1)
    public static let segMax = Self(bit: 2)
    public static let geometry = Self(bit: 4)
    public static let readOnly = Self(bit: 5)
    public static let blockSize = Self(bit: 6)
    public static let flush = Self(bit: 9)
    public static let topology = Self(bit: 10)
    public static let configWCE = Self(bit: 11)
    public static let multiqueue = Self(bit: 12)
    public static let discard = Self(bit: 13)
    public static let writeZeroes = Self(bit: 14)
    public static let lifetime = Self(bit: 15)
    public static let secureErase = Self(bit: 16)
    public static let zoned = Self(bit: 17)

    public static let bitNames: [(bit: Int, name: String)] = [
        (1, "SIZE_MAX"), (2, "SEG_MAX"), (4, "GEOMETRY"), (5, "RO"), (6, "BLK_SIZE"),
        (9, "FLUSH"), (10, "TOPOLOGY"), (11, "CONFIG_WCE"), (12, "MQ"), (13, "DISCARD"),
        (14, "WRITE_ZEROES"), (15, "LIFETIME"), (16, "SECURE_ERASE"), (17, "ZONED"),
    ]
}

/// virtio-console feature bits (virtio 1.2 §5.3.3).
public struct ConsoleFeatures: FeatureBits {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let size = Self(bit: 0)
    public static let multiport = Self(bit: 1)
    public static let emergencyWrite = Self(bit: 2)

    public static let bitNames: [(bit: Int, name: String)] = [
        (0, "SIZE"), (1, "MULTIPORT"), (2, "EMERG_WRITE"),
    ]
}

/// virtio-balloon feature bits (virtio 1.2 §5.5.3).
public struct BalloonFeatures: FeatureBits {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let mustTellHost = Self(bit: 0)
    public static let statsVirtqueue = Self(bit: 1)
    public static let deflateOnOOM = Self(bit: 2)
    public static let freePageHint = Self(bit: 3)
    public static let pagePoison = Self(bit: 4)
    public static let pageReporting = Self(bit: 5)

    public static let bitNames: [(bit: Int, name: String)] = [
        (0, "MUST_TELL_HOST"), (1, "STATS_VQ"), (2, "DEFLATE_ON_OOM"), (3, "FREE_PAGE_HINT"),
        (4, "PAGE_POISON"), (5, "PAGE_REPORTING"),
    ]
}

/// 9P transport feature bits (virtio 9P transport, "Mount tag" feature; §5 table).
public struct NinePFeatures: FeatureBits {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let mountTag = Self(bit: 0)

    public static let bitNames: [(bit: Int, name: String)] = [(0, "MOUNT_TAG")]
}

/// Names for a raw 64-bit feature word of a given device type: transport bits,
/// then the device's own, then `bitN` for anything not defined.
public func featureNames(_ bits: UInt64, deviceType: DeviceType?) -> [String] {
    let device: (names: [String], known: UInt64)
    switch deviceType {
    case .network: device = (NetFeatures(rawValue: bits).names, NetFeatures.known.rawValue)
    case .block: device = (BlockFeatures(rawValue: bits).names, BlockFeatures.known.rawValue)
    case .console: device = (ConsoleFeatures(rawValue: bits).names, ConsoleFeatures.known.rawValue)
    case .balloon: device = (BalloonFeatures(rawValue: bits).names, BalloonFeatures.known.rawValue)
    case .ninePTransport: device = (NinePFeatures(rawValue: bits).names, NinePFeatures.known.rawValue)
    default: device = ([], 0)
    }
    let transport = TransportFeatures(rawValue: bits)
    let rest = bits & ~(device.known | TransportFeatures.known.rawValue)
    let unknown = (0..<64).filter { rest & (1 << UInt64($0)) != 0 }.map { "bit\($0)" }
    return transport.names + device.names + unknown
}
