import VirtioCore

/// What one plugin drives and how: the device type, the features it
/// negotiates, and the queues it sets up. A plugin executable is its profile
/// plus, for non-stubs, its data path.
public struct PluginProfile: Sendable {
    public var name: String
    public var deviceType: DeviceType
    /// True while the plugin only initialises and reports the device.
    public var stub: Bool
    /// Device feature bits beyond VERSION_1 and ACCESS_PLATFORM (always required).
    public var features: FeatureRequest
    /// Names of the queues to set up, in queue index order (as many as the device offers).
    public var queues: [String]
    /// Largest ring this plugin asks for.
    public var maxQueueSize: Int
    /// The version this plugin reports (`virtioctl plugins`, hand-over records).
    public var version: String = PluginMain.version
    /// Requests to send once the device is up, for facts the config space
    /// does not hold (e.g. a disk's serial); reported with the config.
    /// Failures are logged, not fatal. `DeviceDriver.request` sends one.
    public var identify: (@Sendable (DeviceDriver) throws -> [String: ConfigValue])?
    /// Reads the device-specific config layout for reports (virtio 1.2
    /// §5.x.4); `ConfigFields` helps. Default: nothing.
    public var readConfig: @Sendable (_ transport: any Transport, _ negotiated: UInt64) throws -> [String: ConfigValue] = { _, _ in [:] }
    /// Which device queues to set up, once features are negotiated (default:
    /// `queues` in index order). Returned in the order `DeviceDriver.queues` keeps.
    public var queuePlan: (@Sendable (_ negotiated: UInt64, _ device: AttachedDevice) throws -> [(index: Int, name: String)])?
    /// Queues (by name) where a used length beyond the buffer costs that
    /// buffer (the data path drops it and counts) instead of breaking the queue.
    public var droppableQueues: Set<String> = []
    /// The data path; nil for stubs.
    public var dataPath: DataPathFactory?
    /// Mark the process an I/O flusher (PR_SET_IO_FLUSHER): a block
    /// server the kernel's memory reclaim may wait on must not itself wait
    /// on reclaim. Needs CAP_SYS_RESOURCE, which the unit grants when the
    /// manifest says `IOFlusher=yes`; every capability is dropped right after.
    public var ioFlusher = false

    public init(name: String, deviceType: DeviceType, stub: Bool, features: FeatureRequest, queues: [String],
                maxQueueSize: Int = 256, dataPath: DataPathFactory? = nil) {
        self.name = name
        self.deviceType = deviceType
        self.stub = stub
        self.features = features
        self.queues = queues
        self.maxQueueSize = maxQueueSize
        self.dataPath = dataPath
    }

    /// The feature request including the transport bits every virtiod plugin needs:
    /// VERSION_1 (modern device) and ACCESS_PLATFORM (DMA goes through the IOMMU),
    /// and the ring features the core implements. With `physicalDMA` (vfio's
    /// no-IOMMU mode: descriptors carry guest-physical addresses) ACCESS_PLATFORM
    /// is accepted when offered but not required (virtio 1.2 §6.1).
    public func fullRequest(physicalDMA: Bool) -> FeatureRequest {
        let t = TransportFeatures.self
        let platform = t.accessPlatform.rawValue
        return FeatureRequest(
            required: features.required | t.version1.rawValue | (physicalDMA ? 0 : platform),
            wanted: features.wanted | t.eventIndex.rawValue | t.indirectDescriptors.rawValue | t.ringPacked.rawValue
                | (physicalDMA ? platform : 0),
            dependencies: features.dependencies)
    }
}
