import FoundationEssentials

/// Messages between the supervisor and a plugin over the plugin's
/// SOCK_SEQPACKET socket (fd 3 in the plugin). One JSON object per message;
/// fds travel with `attach` as SCM_RIGHTS, in the order `AttachInfo` lists.
public struct PluginMessage: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// supervisor → plugin: drive this device (fds attached).
        case attach
        /// plugin → supervisor: the device is up; here is what it negotiated.
        case status
        /// plugin → supervisor: attach failed or the device broke.
        case error
        /// supervisor → plugin: reset the device and exit.
        case stop
        /// supervisor → plugin: send a fresh status.
        case query
        /// plugin → supervisor: a `standby` plugin holds the device's fds and
        /// waits for `resume` (hot reload, docs/architecture.md "Hand-over").
        case ready
        /// supervisor → plugin: stop moving data, write the hand-over record
        /// into the state area, answer `quiesced`, then wait for `exit` or `resume`.
        case quiesce
        /// plugin → supervisor: the hand-over record is written (message: a summary).
        case quiesced
        /// supervisor → plugin: a standby plugin takes over from the record;
        /// a quiesced one continues as before (the reload was rolled back).
        case resume
        /// supervisor → plugin: leave without touching the device (after a hand-over).
        case exit
    }
    public var version: Int
    public var kind: Kind
    public var attach: AttachInfo?
    public var status: DriverReport?
    public var message: String?
    /// On `status`: true when it answers a `query`.
    public var reply: Bool?

    public init(kind: Kind, attach: AttachInfo? = nil, status: DriverReport? = nil, message: String? = nil,
                reply: Bool? = nil) {
        self.version = PluginProtocol.version
        self.kind = kind
        self.attach = attach
        self.status = status
        self.message = message
        self.reply = reply
    }

    public func encoded() throws -> [UInt8] { Array(try JSONEncoder().encode(self)) }
    public static func decode(_ bytes: [UInt8]) throws -> PluginMessage {
        try JSONDecoder().decode(PluginMessage.self, from: Data(bytes))
    }
}

public enum PluginProtocol {
    public static let version = 1
    /// The plugin's end of its socket.
    public static let socketFD: Int32 = 3
    /// The plugins virtiod knows (executables virtiod-NAME), as `unload`,
    /// `load` and `reload` name them.
    public static let pluginNames = ["net", "block", "console", "balloon", "9p"]
}

/// How a plugin takes its device.
public enum AttachMode: String, Codable, Sendable {
    /// Reset and initialise it (virtio 1.2 §3.1.1).
    case fresh
    /// Map everything, answer `ready`, and take over from the hand-over
    /// record only when `resume` comes (hot reload: the old plugin still runs).
    case standby
    /// Take over from the hand-over record at once (virtiod restarted while
    /// the device kept running). A record it cannot use is an error.
    case adopt
}

/// What a plugin needs to drive one device. The fds attached to the message
/// are, in order: VFIO device, DMA memfd, state memfd (the hand-over area,
/// `stateSize` bytes), one eventfd per MSI-X vector, then
/// the INTx eventfd when `intx` (devices without MSI-X), then `tapQueues`
/// TAP fds (one per queue of a multi-queue TAP) when `tapInterface` is set.
public struct AttachInfo: Codable, Sendable {
    public var address: String
    public var type: String
    /// Size of the DMA memfd, and the device address (IOVA) of its first byte.
    public var dmaSize: Int
    public var iovaBase: UInt64
    /// MSI-X vectors enabled (= eventfds attached).
    public var vectors: Int
    /// No MSI-X: one INTx eventfd follows (unmask through the VFIO device fd).
    public var intx: Bool
    /// net: the TAP interface the supervisor made for the device (fd attached).
    public var tapInterface: String?
    public var tapQueues: Int = 0
    public var options: [String: String]
    public var interfaceName: String?
    /// Size of the state memfd (the hand-over area).
    public var stateSize: Int
    /// nil means `.fresh`.
    public var mode: AttachMode?

    public init(address: String, type: String, dmaSize: Int, iovaBase: UInt64, vectors: Int, intx: Bool,
                options: [String: String], interfaceName: String?, stateSize: Int, mode: AttachMode = .fresh) {
        self.address = address
        self.type = type
        self.dmaSize = dmaSize
        self.iovaBase = iovaBase
        self.vectors = vectors
        self.intx = intx
        self.tapInterface = nil
        self.options = options
        self.interfaceName = interfaceName
        self.stateSize = stateSize
        self.mode = mode
    }
}
