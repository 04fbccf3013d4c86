import FoundationEssentials
import VirtioCore

/// The control socket's protocol, version 2 (docs/control-protocol.md):
/// one JSON object per line each way over /run/virtiod/control.
public enum ControlProtocol {
    public static let version = 2
    public static let defaultSocketPath = "/run/virtiod/control"
    /// Verbs anyone may use; every other verb needs root (SO_PEERCRED uid 0).
    public static let readOnlyVerbs: Set<ControlVerb> = [.list, .status, .plugins]
}

public enum ControlVerb: String, Codable, Sendable, CaseIterable {
    case list, status, plugins, claim, release, unload, load, reload, restart
}

public struct ControlRequest: Codable, Sendable {
    public var version: Int
    public var verb: ControlVerb
    /// A PCI address ("0000:00:03.0", or a unique suffix such as "03.0").
    public var device: String?
    /// claim: take it even if it backs a mounted filesystem or the default route.
    public var force: Bool?
    /// unload, load, reload: a plugin name (as `virtioctl plugins` lists them).
    public var plugin: String?
    /// reload: a plugin name or a device (virtiod decides which).
    public var target: String?
    /// unload: also give the plugin's devices back to the kernel.
    public var release: Bool?

    public init(verb: ControlVerb, device: String? = nil, force: Bool? = nil, plugin: String? = nil, release: Bool? = nil,
                target: String? = nil) {
        self.version = ControlProtocol.version
        self.target = target
        self.verb = verb
        self.device = device
        self.force = force
        self.plugin = plugin
        self.release = release
    }
}

public struct ControlError: Codable, Sendable, Error, CustomStringConvertible {
    public enum Code: String, Codable, Sendable {
        case badRequest = "bad-request"
        case unsupportedVersion = "unsupported-version"
        case permissionDenied = "permission-denied"
        case noSuchDevice = "no-such-device"
        case refused
        case failed
        /// virtiod is busy with this device or has too many clients: try again.
        case busy
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

public struct ControlResponse: Codable, Sendable {
    public var version: Int
    public var ok: Bool
    public var error: ControlError?
    public var devices: [DeviceReport]?
    public var plugins: [PluginReport]?
    /// A human sentence about what a changing verb did.
    public var message: String?

    public init(ok: Bool = true, error: ControlError? = nil, devices: [DeviceReport]? = nil,
                plugins: [PluginReport]? = nil, message: String? = nil) {
        self.version = ControlProtocol.version
        self.ok = ok
        self.error = error
        self.devices = devices
        self.plugins = plugins
        self.message = message
    }

    public static func failure(_ e: ControlError) -> ControlResponse { ControlResponse(ok: false, error: e) }
}

/// Where a device stands with virtiod.
public enum DeviceState: String, Codable, Sendable {
    /// Seen, not claimed (the policy says no, or nothing says yes).
    case unclaimed
    /// The policy wants it but virtiod will not take it; `reason` says why.
    case refused
    /// Being bound to vfio-pci and set up.
    case claiming
    /// Plugin spawned, device not yet initialised.
    case starting
    /// Plugin drives the device.
    case running
    /// Plugin asked to stop, device about to be given back.
    case stopping
    /// Plugin or setup failed; `reason` says why. Restarted with back-off.
    case failed
    /// Claimed, its plugin unloaded (`virtioctl unload`): reset and quiet
    /// until `virtioctl load`.
    case unloaded
}

public enum PluginState: String, Codable, Sendable {
    case starting, running, stopping, failed, exited
}

public struct PluginProcessReport: Codable, Sendable {
    public var name: String
    public var executable: String
    public var pid: Int32?
    public var state: PluginState
    /// Seconds since the Unix epoch when the current process started.
    public var startedAt: Double?
    public var uptimeSeconds: Double?
    public var restarts: Int
    public var lastExit: String?
    /// Hot reloads (`virtioctl reload`) that replaced the process without a device reset.
    public var reloads: Int?
    /// Traffic pause of the last reload: quiesce sent → successor running, in ms.
    public var lastReloadPauseMS: Double?
    /// The process's systemd unit (nil when virtiod spawned it directly).
    public var unit: String?
    /// What the last `virtioctl reload` of the device did (success or why it was rolled back).
    public var lastReload: String?
    /// The version the plugin reports of itself.
    public var version: String?
    public init(name: String, executable: String, pid: Int32?, state: PluginState, startedAt: Double?,
                uptimeSeconds: Double?, restarts: Int, lastExit: String?, reloads: Int? = nil, lastReloadPauseMS: Double? = nil) {
        self.name = name
        self.executable = executable
        self.pid = pid
        self.state = state
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.restarts = restarts
        self.lastExit = lastExit
        self.reloads = reloads
        self.lastReloadPauseMS = lastReloadPauseMS
    }
}

/// One device as `virtioctl list` / `status` shows it.
public struct DeviceReport: Codable, Sendable {
    public var address: String
    public var type: String
    public var deviceID: String
    public var state: DeviceState
    /// The kernel driver bound right now (virtio-pci, vfio-pci, none).
    public var kernelDriver: String?
    public var iommuGroup: Int?
    /// How a claimed device reaches its DMA memory: "iommu" (I/O virtual
    /// addresses through VFIO) or "physical" (no IOMMU: hugepages at
    /// guest-physical addresses, no DMA isolation).
    public var dma: String?
    public var numaNode: Int?
    /// Why it is refused or failed; what virtiod did last.
    public var reason: String?
    /// The config section that decided ("file:line"), if any.
    public var rule: String?
    /// Kernel-made interfaces and disks (when the kernel drives it), or the
    /// interface the plugin made.
    public var interfaces: [String]
    public var plugin: PluginProcessReport?
    public var driver: DriverReport?
    /// The kernel-facing endpoints virtiod made for it (a TAP interface, /dev/nbd0…).
    public var endpoints: [EndpointReport] = []

    public init(address: String, type: String, deviceID: String, state: DeviceState, kernelDriver: String?,
                iommuGroup: Int?, numaNode: Int?, reason: String? = nil, rule: String? = nil, interfaces: [String] = [],
                plugin: PluginProcessReport? = nil, driver: DriverReport? = nil) {
        self.address = address
        self.type = type
        self.deviceID = deviceID
        self.state = state
        self.kernelDriver = kernelDriver
        self.iommuGroup = iommuGroup
        self.numaNode = numaNode
        self.reason = reason
        self.rule = rule
        self.interfaces = interfaces
        self.plugin = plugin
        self.driver = driver
    }
}

/// One plugin (manifest + executable) and the devices its processes drive.
public struct PluginReport: Codable, Sendable {
    public var name: String
    /// The manifest in force (nil: none is installed any more, a process still runs).
    public var manifest: String?
    /// Manifests of the same name that this one overrides (lower-precedence folders).
    public var overrides: [String] = []
    public var description: String?
    public var executable: String
    public var installed: Bool
    /// The version the plugin reports of itself.
    public var version: String?
    public var stub: Bool?
    /// Device types its manifest says it drives.
    public var deviceTypes: [String] = []
    public var endpoints: [String] = []
    public var devices: [String]
    public var pids: [Int32]
    /// The systemd units of its processes.
    public var units: [String] = []
    /// Stopped with `virtioctl unload` (until `load`).
    public var unloaded: Bool = false
    public init(name: String, executable: String, installed: Bool, stub: Bool?, devices: [String], pids: [Int32]) {
        self.name = name
        self.executable = executable
        self.installed = installed
        self.stub = stub
        self.devices = devices
        self.pids = pids
    }
}

/// One kernel-facing endpoint of a claimed device, as `virtioctl status` shows it.
public struct EndpointReport: Codable, Sendable, Equatable {
    public var kind: String
    /// What users see of it ("vtnet0", "/dev/nbd0").
    public var summary: String
    /// Its name among interfaces and disks, if it has one ("nbd0").
    public var name: String?
    public var details: [String: String]
    public init(kind: String, summary: String, name: String?, details: [String: String]) {
        self.kind = kind
        self.summary = summary
        self.name = name
        self.details = details
    }
}
