import VirtioCore

/// What a plugin reports about the device it drives: negotiated features,
/// queues, interrupts and device configuration.
public struct DriverReport: Codable, Sendable {
    public struct FeatureSet: Codable, Sendable {
        /// The 64 feature bits as "0x…".
        public var bits: String
        public var names: [String]
        public init(_ raw: UInt64, deviceType: DeviceType?) {
            bits = "0x" + String(raw, radix: 16)
            names = featureNames(raw, deviceType: deviceType)
        }
    }

    public struct Queue: Codable, Sendable {
        public var index: Int
        public var name: String
        public var size: Int
        public var maxSize: Int
        public var layout: String
        /// MSI-X vector, nil when none.
        public var msixVector: Int?
        public var interrupts: UInt64
        /// Data-path counters (packets, bytes, drops, errors, kicks), absent for stubs.
        public var counters: [String: UInt64]?
        /// Where the rings lie in the DMA memfd (byte offsets of the
        /// descriptor table, driver area, device area), for debugging.
        public var ringOffsets: [String: Int]?
        public init(index: Int, name: String, size: Int, maxSize: Int, layout: String, msixVector: Int?, interrupts: UInt64,
                    counters: [String: UInt64]? = nil, ringOffsets: [String: Int]? = nil) {
            self.index = index
            self.name = name
            self.size = size
            self.maxSize = maxSize
            self.layout = layout
            self.msixVector = msixVector
            self.interrupts = interrupts
            self.counters = counters
            self.ringOffsets = ringOffsets
        }
    }

    /// True for plugins that only initialise the device and report it.
    public var stub: Bool
    public var pluginVersion: String
    public var offered: FeatureSet
    public var negotiated: FeatureSet
    /// Queues the device offers in all.
    public var deviceQueues: Int
    public var queues: [Queue]
    public var msixVectors: Int
    /// "msix", "intx" (no MSI-X table) or "none".
    public var interruptMode: String
    public var configVector: Int?
    public var configInterrupts: UInt64
    public var config: [String: ConfigValue]
    /// Device status register, by name.
    public var status: [String]
    /// How the plugin reaches the registers ("mmap" or "pread").
    public var registerAccess: String
    /// Register reads/writes through pread/pwrite that failed (lost writes, all-ones reads).
    public var registerErrors: UInt64?

    public init(stub: Bool, pluginVersion: String, offered: FeatureSet, negotiated: FeatureSet, deviceQueues: Int,
                queues: [Queue], msixVectors: Int, interruptMode: String, configVector: Int?, configInterrupts: UInt64,
                config: [String: ConfigValue], status: [String], registerAccess: String, registerErrors: UInt64? = nil) {
        self.stub = stub
        self.pluginVersion = pluginVersion
        self.offered = offered
        self.negotiated = negotiated
        self.deviceQueues = deviceQueues
        self.queues = queues
        self.msixVectors = msixVectors
        self.interruptMode = interruptMode
        self.configVector = configVector
        self.configInterrupts = configInterrupts
        self.config = config
        self.status = status
        self.registerAccess = registerAccess
        self.registerErrors = registerErrors
    }
}
