import FoundationEssentials
import Glibc
import VirtioCore

/// One `[Device]` section: which functions it matches and what to do with them.
///
///     [Device]
///     Address=0000:00:03.0     # PCI address, shell glob (fnmatch) allowed
///     Type=net                 # virtio type name: net block console balloon 9p …
///     MACAddress=52:54:00:12:34:01   # net: the device's MAC (from its config space)
///     Serial=virtiod-blk0      # block: the device's serial (GET_ID)
///     Claim=yes                # yes: take it from the kernel; no: leave it alone
///     Force=no                 # yes: claim even if it backs a mount or the default route
///     Plugin=net               # the plugin (manifest name) to use; default: the one for the type
///     InterfaceName=vtnet0     # tap endpoint: name of the TAP interface
///     HeartbeatSec=20          # silence after which the plugin is killed and restarted
///     MountPoint=/srv/share    # 9p: where the share is mounted (default /run/virtiod-9p/<mount tag>)
///     ReadOnly=yes             # 9p: mount the share read-only
///     Option=key=value         # any other plugin option (repeatable)
///
/// Every match key given must match; a section with no match key matches
/// nothing (never everything). When several sections match a function, the
/// last one read wins (files in order: virtiod.conf, then virtiod.conf.d/*.conf
/// sorted by name).
public struct DeviceRule: Sendable, Hashable {
    public var address: String?
    public var type: String?
    public var macAddress: String?
    public var serial: String?
    public var claim = false
    public var force = false
    /// The plugin to drive it with (a manifest name); nil: the one whose DeviceType= lists the type.
    public var plugin: String?
    public var interfaceName: String?
    /// The endpoint kind to export the device with where its plugin offers
    /// a choice (`Endpoint=nbd` for a disk whose manifest says `ublk|nbd`).
    public var endpoint: String?
    /// 9p: where the share is mounted (absolute; nil: the default under /run/virtiod-9p).
    public var mountPoint: String?
    /// 9p: mount the share read-only.
    public var readOnly: Bool?
    /// Where `InterfaceName=` was given.
    public var interfaceNameOrigin: ConfigLocation?
    /// Seconds a plugin may stay silent before it is killed and restarted.
    public var heartbeatTimeout: Double?
    /// As systemd's StartLimitBurst=/…IntervalSec=: after this many failures
    /// of the device's plugin within the interval, it is not restarted
    /// again until `virtioctl restart` (or claim) says so.
    public var restartLimitBurst: Int?
    public var restartLimitInterval: Double?
    public static let defaultRestartLimitBurst = 5
    public static let defaultRestartLimitInterval = 60.0
    public var options: [String: String] = [:]
    /// "file:line" of the section, for `virtioctl status` and logs.
    public var origin: String

    public var hasMatch: Bool { address != nil || type != nil || macAddress != nil || serial != nil }
}

/// Facts about a function that rules can match beyond discovery: identity
/// read from the device itself once virtiod can (MAC, serial).
public struct DeviceIdentity: Sendable, Hashable {
    public var macAddress: String?
    public var serial: String?
    public init(macAddress: String? = nil, serial: String? = nil) {
        self.macAddress = macAddress
        self.serial = serial
    }
}

/// Machine-wide settings: the `[Service]` section.
///
///     [Service]
///     UnsafeNoIOMMU=yes        # drive devices in no IOMMU group through vfio's
///                              # no-IOMMU mode (no DMA isolation; taints the kernel)
public struct ServiceSettings: Sendable, Hashable {
    /// Devices in no IOMMU group are claimed through vfio-pci's no-IOMMU
    /// mode: DMA memory is hugepages at guest-physical addresses.
    public var unsafeNoIOMMU = false
    /// "file:line" where it was last set.
    public var unsafeNoIOMMUOrigin: String?
    public init() {}
}

/// The claim policy: the rules of all configuration files, in order, and
/// the `[Service]` settings (the last one read wins).
/// With no rules (the default configuration) nothing is claimed.
public struct ClaimPolicy: Sendable, Hashable {
    public var rules: [DeviceRule] = []
    public var service = ServiceSettings()

    public init(rules: [DeviceRule] = [], service: ServiceSettings = ServiceSettings()) {
        self.rules = rules
        self.service = service
    }

    /// Parse one file's text; errors name the file and line.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> [DeviceRule] {
        var service = ServiceSettings()
        return try parse(text, file: file, service: &service)
    }

    /// Parse one file's text: its `[Device]` rules, and its `[Service]`
    /// settings applied to `service`.
    public static func parse(_ text: String, file: String, service: inout ServiceSettings) throws(ConfigError) -> [DeviceRule] {
        var rules: [DeviceRule] = []
        for section in try INIFile.parse(text, file: file) {
            if section.name == "Service" {
                for a in section.assignments {
                    switch a.key {
                    case "UnsafeNoIOMMU":
                        guard let b = INIFile.boolean(a.value) else {
                            throw ConfigError(file: file, line: a.line, reason: "\(a.key)= needs yes or no, got '\(a.shown)'")
                        }
                        service.unsafeNoIOMMU = b
                        service.unsafeNoIOMMUOrigin = "\(file):\(a.line)"
                    default:
                        throw ConfigError(file: file, line: a.line, reason: "unknown key '\(Log.quoted(a.key, limit: 40))' in [Service]")
                    }
                }
                continue
            }
            guard section.name == "Device" else {
                throw ConfigError(file: file, line: section.line,
                                  reason: "unknown section [\(Log.quoted(section.name, limit: 40))] (expected [Device] or [Service])")
            }
            var rule = DeviceRule(origin: "\(file):\(section.line)")
            for a in section.assignments {
                func bool() throws(ConfigError) -> Bool {
                    guard let b = INIFile.boolean(a.value) else {
                        throw ConfigError(file: file, line: a.line, reason: "\(a.key)= needs yes or no, got '\(a.shown)'")
                    }
                    return b
                }
                switch a.key {
                case "Address": rule.address = a.value
                case "Type":
                    guard DeviceType(name: a.value) != nil else {
                        let names = DeviceType.allCases.map(\.description).joined(separator: ", ")
                        throw ConfigError(file: file, line: a.line, reason: "unknown device type '\(a.shown)' (one of: \(names))")
                    }
                    rule.type = a.value
                case "MACAddress":
                    guard isMAC(a.value) else {
                        throw ConfigError(file: file, line: a.line, reason: "MACAddress= needs xx:xx:xx:xx:xx:xx, got '\(a.shown)'")
                    }
                    rule.macAddress = a.value.lowercased()
                case "Serial": rule.serial = a.value
                case "Claim": rule.claim = try bool()
                case "Force": rule.force = try bool()
                case "Plugin":
                    guard PluginManifest.isValidName(a.value) else {
                        throw ConfigError(file: file, line: a.line, reason: "Plugin= '\(a.shown)' is not a plugin name")
                    }
                    rule.plugin = a.value
                case "InterfaceName":
                    guard !a.value.isEmpty, a.value.utf8.count < 16, !a.value.contains("/"), !a.value.contains(where: \.isWhitespace) else {
                        throw ConfigError(file: file, line: a.line, reason: "InterfaceName= '\(a.shown)' is not a valid interface name")
                    }
                    rule.interfaceName = a.value
                    rule.interfaceNameOrigin = ConfigLocation(file: file, line: a.line)
                case "Endpoint":
                    guard EndpointKinds.names.contains(a.value) else {
                        throw ConfigError(file: file, line: a.line, reason: "Endpoint= needs one of \(EndpointKinds.names.joined(separator: ", ")), got '\(a.shown)'")
                    }
                    rule.endpoint = a.value
                case "MountPoint":
                    let parts = a.value.split(separator: "/")
                    guard a.value.hasPrefix("/"), a.value.utf8.count < 4096, !parts.isEmpty,
                          !parts.contains("."), !parts.contains(".."),
                          !a.value.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 } == true }) else {
                        throw ConfigError(file: file, line: a.line, reason: "MountPoint= needs an absolute path other than / without . or .., got '\(a.shown)'")
                    }
                    rule.mountPoint = a.value
                case "ReadOnly": rule.readOnly = try bool()
                case "HeartbeatSec":
                    guard let v = Double(a.value), v >= Self.heartbeatRange.lowerBound, v <= Self.heartbeatRange.upperBound else {
                        throw ConfigError(file: file, line: a.line, reason: "HeartbeatSec= needs seconds from "
                            + "\(Int(Self.heartbeatRange.lowerBound)) to \(Int(Self.heartbeatRange.upperBound)), got '\(a.shown)'")
                    }
                    rule.heartbeatTimeout = v
                case "RestartLimitBurst":
                    guard let n = Int(a.value), (1...1000).contains(n) else {
                        throw ConfigError(file: file, line: a.line, reason: "RestartLimitBurst= needs a number from 1 to 1000, got '\(a.shown)'")
                    }
                    rule.restartLimitBurst = n
                case "RestartLimitIntervalSec":
                    guard let v = Double(a.value), v >= 1, v <= 86400 else {
                        throw ConfigError(file: file, line: a.line, reason: "RestartLimitIntervalSec= needs seconds from 1 to 86400, got '\(a.shown)'")
                    }
                    rule.restartLimitInterval = v
                case "Option":
                    guard let eq = a.value.firstIndex(of: "="), eq != a.value.startIndex else {
                        throw ConfigError(file: file, line: a.line, reason: "Option= needs key=value, got '\(a.shown)'")
                    }
                    rule.options[String(a.value[..<eq])] = String(a.value[a.value.index(after: eq)...])
                default:
                    throw ConfigError(file: file, line: a.line, reason: "unknown key '\(Log.quoted(a.key, limit: 40))' in [Device]")
                }
            }
            guard rule.hasMatch else {
                throw ConfigError(file: file, line: section.line,
                                  reason: "[Device] without Address=, Type=, MACAddress= or Serial= would match nothing")
            }
            rules.append(rule)
        }
        try checkInterfaceNames(rules)
        return rules
    }

    /// Load `main` and then `dropInDirectory/*.conf` sorted by name. A missing
    /// main file or folder is an empty configuration, not an error.
    public static func load(main: String = "/etc/virtiod/virtiod.conf",
                            dropInDirectory: String = "/etc/virtiod/virtiod.conf.d") throws -> ClaimPolicy {
        let fm = FileManager.default
        var files: [String] = []
        if fm.fileExists(atPath: main) { files.append(main) }
        if let names = try? fm.contentsOfDirectory(atPath: dropInDirectory) {
            files += names.filter { $0.hasSuffix(".conf") }.sorted().map { dropInDirectory + "/" + $0 }
        }
        var rules: [DeviceRule] = []
        var service = ServiceSettings()
        for f in files { rules += try parse(try INIFile.read(f), file: f, service: &service) }
        try checkInterfaceNames(rules)
        return ClaimPolicy(rules: rules, service: service)
    }

    /// Two rules naming the same interface would have two NICs share one TAP
    /// (their traffic mixed): the second is an error, at its line.
    static func checkInterfaceNames(_ rules: [DeviceRule]) throws(ConfigError) {
        var seen: [String: String] = [:]
        for r in rules {
            guard let name = r.interfaceName, let at = r.interfaceNameOrigin else { continue }
            if let first = seen[name] {
                throw ConfigError(file: at.file, line: at.line,
                                  reason: "InterfaceName=\(name) is already given at \(first); two NICs cannot share an interface")
            }
            seen[name] = "\(at.file):\(at.line)"
        }
    }

    /// The rule that decides for `function` (the last matching one), if any.
    public func rule(for function: VirtioFunction, identity: DeviceIdentity = .init()) -> DeviceRule? {
        rules.last { $0.matches(function, identity) }
    }

    /// What `HeartbeatSec=` accepts: below 2 s a busy plugin under load could
    /// be killed for answering late; above an hour it is no watchdog.
    static let heartbeatRange = 2.0...3600.0

    static func isMAC(_ s: String) -> Bool {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && UInt8($0, radix: 16) != nil }
    }
}

extension DeviceRule {
    func matches(_ f: VirtioFunction, _ id: DeviceIdentity) -> Bool {
        guard hasMatch else { return false }
        if let address, fnmatch(address, f.address, 0) != 0 { return false }
        if let type, f.type != type { return false }
        if let macAddress, id.macAddress?.lowercased() != macAddress { return false }
        if let serial, id.serial != serial { return false }
        return true
    }
}
