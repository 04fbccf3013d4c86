/// Register offsets of struct virtio_pci_common_cfg (virtio 1.2 §4.1.4.3).
enum CommonConfig {
    static let deviceFeatureSelect = 0   // le32
    static let deviceFeature = 4         // le32, RO
    static let driverFeatureSelect = 8   // le32
    static let driverFeature = 12        // le32
    static let configMSIXVector = 16     // le16
    static let numQueues = 18            // le16, RO
    static let deviceStatus = 20         // u8
    static let configGeneration = 21     // u8, RO
    static let queueSelect = 22          // le16
    static let queueSize = 24            // le16
    static let queueMSIXVector = 26      // le16
    static let queueEnable = 28          // le16
    static let queueNotifyOff = 30       // le16, RO
    static let queueDesc = 32            // le64
    static let queueDriver = 40          // le64
    static let queueDevice = 48          // le64
    static let queueNotifyData = 56      // le16 (VIRTIO_F_NOTIF_CONFIG_DATA)
    static let queueReset = 58           // le16 (VIRTIO_F_RING_RESET)

    /// Every virtio 1.x device has at least the fields up to queue_device.
    static let minimumLength = 56
}
