import FoundationEssentials

/// Messages between the supervisor and a plugin over the plugin's
/// SOCK_SEQPACKET socket (the plugin's standard input). One JSON object per
/// message (docs/plugin-protocol.md). File descriptors travel by name: the
/// `attach` message lists every fd's name in `AttachInfo.fds`, and the fds
/// themselves follow as SCM_RIGHTS, in that order, at most
/// `PluginProtocol.fdsPerMessage` per message (the first batch on `attach`,
/// the rest on `fds` messages), so no count of vectors or queues is too many.
public struct PluginMessage: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// supervisor → plugin: drive this device (fds attached).
        case attach
        /// supervisor → plugin: more of the fds `attach` named.
        case fds
        /// plugin → supervisor, first, as soon as `attach` and its fds are in:
        /// its pid and (in `message`) its version.
        case hello
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
        /// Both ways, about one part of an endpoint that grows while the
        /// device runs (a console's ports): plugin → supervisor asks to open,
        /// update or close it; supervisor → plugin answers (with the part's
        /// fd attached when it is new) or tells of activity on it.
        case endpoint
    }
    public var version: Int
    public var kind: Kind
    public var attach: AttachInfo?
    public var status: DriverReport?
    public var message: String?
    /// On `status`: true when it answers a `query`.
    public var reply: Bool?
    /// Plugin → supervisor: the sender's process id (the supervisor checks it
    /// against the plugin's systemd unit before it ever signals that pid).
    public var pid: Int32?
    /// On `endpoint`.
    public var endpoint: EndpointEvent?

    public init(kind: Kind, attach: AttachInfo? = nil, status: DriverReport? = nil, message: String? = nil,
                reply: Bool? = nil, pid: Int32? = nil, endpoint: EndpointEvent? = nil) {
        self.version = PluginProtocol.version
        self.kind = kind
        self.attach = attach
        self.status = status
        self.message = message
        self.reply = reply
        self.pid = pid
        self.endpoint = endpoint
    }

    public func encoded() throws -> [UInt8] { Array(try JSONEncoder().encode(self)) }
    public static func decode(_ bytes: [UInt8]) throws -> PluginMessage {
        try JSONDecoder().decode(PluginMessage.self, from: Data(bytes))
    }
}

public enum PluginProtocol {
    /// 2: fds by name in batches, the socket on standard input, endpoints.
    public static let version = 2
    /// The plugin's end of its socket: its standard input.
    public static let socketFD: Int32 = 0
    /// Most fds attached to one message (the C shim's and well below the kernel's SCM_MAX_FD, 253).
    public static let fdsPerMessage = 64
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

/// The names of the fds every device comes with (endpoint fds are named
/// `<kind>.<index>`, e.g. `tap.0`).
public enum FDName {
    /// The VFIO device fd (BARs, interrupts, config space).
    public static let vfioDevice = "vfio-device"
    /// The DMA memfd, mapped for the device at `AttachInfo.iovaBase`.
    public static let dma = "dma"
    /// The hand-over area (state memfd, not DMA-mapped).
    public static let state = "state"
    /// The INTx eventfd of a device without MSI-X (uio_pci_generic: /dev/uioN).
    public static let intx = "intx"
    /// uio_pci_generic (no IOMMU, no VFIO no-IOMMU mode): the function's
    /// sysfs `config` file and the `resourceN` file of each BAR it uses,
    /// in place of the VFIO device fd.
    public static let pciConfig = "pci-config"
    public static func bar(_ n: Int) -> String { "\(barPrefix)\(n)" }
    /// N of a `pci-bar.N` name, nil for any other name.
    public static func barIndex(_ name: String) -> Int? {
        name.hasPrefix(barPrefix) ? Int(name.dropFirst(barPrefix.count)) : nil
    }
    static let barPrefix = "pci-bar."
    /// The eventfd of MSI-X vector `n`.
    public static func msix(_ n: Int) -> String { "msix.\(n)" }
    /// The `index`th fd of endpoint `kind`.
    public static func endpoint(_ kind: String, _ index: Int) -> String { "\(kind).\(index)" }
}

/// A kernel-facing endpoint the supervisor made for the device (it holds the
/// privileges and keeps it across plugin restarts): its kind as manifests
/// name it, its fds' names, and facts the plugin needs (e.g. an interface name).
public struct EndpointInfo: Codable, Sendable, Hashable {
    public var kind: String
    public var fds: [String]
    public var facts: [String: String]
    public init(kind: String, fds: [String], facts: [String: String]) {
        self.kind = kind
        self.fds = fds
        self.facts = facts
    }
}

/// An `endpoint` message: one part (`key`, e.g. a port id) of an endpoint
/// of `kind` whose parts come and go while the device runs.
public struct EndpointEvent: Codable, Sendable, Hashable {
    public enum Action: String, Codable, Sendable {
        /// plugin → supervisor: make the part (or update its `facts`, e.g. a
        /// name learnt later); answered by `opened`.
        case open
        /// plugin → supervisor: the part is gone; close it (no answer).
        case close
        /// supervisor → plugin: the part exists; its fd is attached when the
        /// plugin did not have it yet (`facts["fd"] == "attached"`).
        case opened
        /// supervisor → plugin: the part could not be made (`facts["error"]`).
        case failed
        /// supervisor → plugin: something outside touched the part (a
        /// process opened the terminal): look at it again.
        case activity
    }
    public var kind: String
    public var action: Action
    public var key: Int
    public var facts: [String: String]
    public init(kind: String, action: Action, key: Int, facts: [String: String] = [:]) {
        self.kind = kind
        self.action = action
        self.key = key
        self.facts = facts
    }
}

/// What a plugin needs to drive one device. `fds` names, in order, the fds
/// that come with `attach` and the `fds` messages after it.
public struct AttachInfo: Codable, Sendable {
    public var address: String
    /// The device type's name ("net", "rng", …) and number (virtio 1.2 §5).
    public var type: String
    public var typeID: UInt32
    /// The plugin (manifest) name the supervisor started.
    public var plugin: String
    /// Size of the DMA memfd, and the device address (IOVA) of its first byte.
    public var dmaSize: Int
    public var iovaBase: UInt64
    /// vfio no-IOMMU mode: the DMA memfd is hugepages the device reaches at
    /// guest-physical addresses, `dmaSegments[i]` for bytes
    /// `i * dmaSegmentSize ..< (i + 1) * dmaSegmentSize`; `iovaBase` is
    /// unused. nil: one IOMMU mapping at `iovaBase`.
    public var dmaSegmentSize: Int?
    public var dmaSegments: [UInt64]?
    /// Size of the state memfd (the hand-over area).
    public var stateSize: Int
    public var options: [String: String]
    /// nil means `.fresh`.
    public var mode: AttachMode?
    /// Every fd's name, in the order they are sent.
    public var fds: [String]
    public var endpoints: [EndpointInfo]

    public init(address: String, type: String, typeID: UInt32, plugin: String, dmaSize: Int, iovaBase: UInt64,
                stateSize: Int, options: [String: String], mode: AttachMode = .fresh, fds: [String] = [],
                endpoints: [EndpointInfo] = []) {
        self.address = address
        self.type = type
        self.typeID = typeID
        self.plugin = plugin
        self.dmaSize = dmaSize
        self.iovaBase = iovaBase
        self.stateSize = stateSize
        self.options = options
        self.mode = mode
        self.fds = fds
        self.endpoints = endpoints
    }

    /// MSI-X vectors (eventfds `msix.0` … attached).
    public var vectors: Int { fds.filter { $0.hasPrefix("msix.") }.count }
    /// No MSI-X: an INTx eventfd is attached (unmask through the VFIO device fd).
    public var intx: Bool { fds.contains(FDName.intx) }
}

/// What a plugin executable prints (as JSON) when run with `--describe`.
public struct PluginSelfDescription: Codable, Sendable, Hashable {
    public var name: String
    public var version: String
    public var stub: Bool
    /// The device type number it drives.
    public var deviceType: UInt32
    public init(name: String, version: String, stub: Bool, deviceType: UInt32) {
        self.name = name
        self.version = version
        self.stub = stub
        self.deviceType = deviceType
    }
}
