import FoundationEssentials
import VirtioCore

/// A plugin as virtiod knows it: an executable plus this description, read
/// from `NAME.plugin` (systemd-style INI, like the config; docs/plugin-guide.md):
///
///     [Plugin]
///     Description=virtio-net driver on a TAP interface
///     Exec=/usr/libexec/virtiod/virtiod-net
///     DeviceType=net                # type names or numbers (virtio 1.2 §5), space-separated
///     Endpoints=tap                 # kernel-facing endpoints the supervisor makes (space-separated;
///                                   # `ublk|nbd`: the first this machine has, or the device's Endpoint=)
///     DMAMemory=1M                  # DMA memory per device …
///     DMAMemoryPerQueue=8M          # … plus this per endpoint queue (a TAP queue, …)
///     MemoryMax=128M                # the plugin unit's limits
///     TasksMax=16
///     PrivateNetwork=no             # sandbox relaxations the plugin needs
///     IOFlusher=yes                 # CAP_SYS_RESOURCE for PR_SET_IO_FLUSHER (block servers)
///     RestrictAddressFamilies=AF_NETLINK
///     ProcSubset=pid
///
/// The name is the file's name without `.plugin` (`Name=`, if given, must agree).
public struct PluginManifest: Sendable, Hashable {
    public var name: String
    public var description: String?
    public var exec: String
    /// virtio device type numbers this plugin drives.
    public var deviceTypes: [UInt32]
    /// Endpoint kinds, in the order the plugin is given them; an entry
    /// `a|b` is one endpoint of kind a or b (`EndpointKinds.choose`).
    public var endpoints: [String] = []
    public var dmaMemory = 4 << 20
    public var dmaMemoryPerQueue = 0
    public var memoryMax: UInt64 = 256 << 20
    public var tasksMax: UInt64 = 32
    public var privateNetwork = true
    /// The plugin marks itself an I/O flusher: its unit gets CAP_SYS_RESOURCE
    /// (dropped by the plugin right after) and no user namespace (a
    /// capability inside one would not count).
    public var ioFlusher = false
    /// `ProcSubset=` of the unit: "pid" (only processes) or "all".
    public var procSubset = "pid"
    /// Socket address families the plugin may create (none by default: it gets its sockets).
    public var addressFamilies: [String] = []
    /// The file it was read from.
    public var path: String

    /// DMA memory for a device whose endpoints have `queues` queues.
    public func dmaSize(queues: Int) -> Int { dmaMemory + dmaMemoryPerQueue * max(1, queues) }

    public func drives(_ typeID: UInt32?) -> Bool { typeID.map(deviceTypes.contains) ?? false }

    /// Names of the device types, for messages ("net", "type 42").
    public var deviceTypeNames: [String] {
        deviceTypes.map { DeviceType(rawValue: $0)?.description ?? "type \($0)" }
    }

    static let procSubsets = ["pid", "all"]

    /// Parse one manifest; every error names the file and line.
    /// `endpointKinds` are the kinds this virtiod can make.
    public static func parse(_ text: String, path: String, endpointKinds: [String]) throws(ConfigError) -> PluginManifest {
        let file = path.split(separator: "/").last.map(String.init) ?? path
        guard file.hasSuffix(".plugin"), file.count > 7 else {
            throw ConfigError(file: path, line: 0, reason: "a manifest's file name must be NAME.plugin")
        }
        let stem = String(file.dropLast(7))
        guard isValidName(stem) else {
            throw ConfigError(file: path, line: 0, reason: "plugin name '\(stem)' may hold only letters, digits, '-' and '_'")
        }
        let sections = try INIFile.parse(text, file: path)
        guard let plugin = sections.first(where: { $0.name == "Plugin" }) else {
            throw ConfigError(file: path, line: 1, reason: "no [Plugin] section")
        }
        if let other = sections.first(where: { $0.name != "Plugin" }) {
            throw ConfigError(file: path, line: other.line, reason: "unknown section [\(Log.quoted(other.name, limit: 40))] (expected [Plugin])")
        }
        if sections.filter({ $0.name == "Plugin" }).count > 1 {
            throw ConfigError(file: path, line: sections.filter { $0.name == "Plugin" }[1].line, reason: "a second [Plugin] section")
        }
        var m = PluginManifest(name: stem, exec: "", deviceTypes: [], path: path)
        for a in plugin.assignments {
            func fail(_ reason: String) -> ConfigError { ConfigError(file: path, line: a.line, reason: reason) }
            func size() throws(ConfigError) -> UInt64 {
                guard let v = parseSize(a.value) else { throw fail("\(a.key)= needs a size such as 512K, 8M or 1G, got '\(a.shown)'") }
                return v
            }
            func words() -> [String] { a.value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) }
            switch a.key {
            case "Name":
                guard a.value == stem else { throw fail("Name=\(a.shown) differs from the file name (\(stem).plugin)") }
            case "Description":
                m.description = a.value
            case "Exec":
                guard a.value.hasPrefix("/"), !a.value.contains(where: { $0 == " " || $0 == "\t" }) else {
                    throw fail("Exec= needs an absolute path without spaces, got '\(a.shown)'")
                }
                m.exec = a.value
            case "DeviceType":
                for w in words() {
                    if let t = DeviceType(name: w) {
                        m.deviceTypes.append(t.rawValue)
                    } else if let n = UInt32(w), n > 0, n < 256 {
                        m.deviceTypes.append(n)
                    } else {
                        throw fail("unknown device type '\(Log.quoted(w, limit: 40))' (a number 1–255 or one of: \(DeviceType.allCases.map(\.description).joined(separator: ", ")))")
                    }
                }
            case "Endpoints":
                for w in words() {
                    let alternatives = w.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
                    for k in alternatives where !endpointKinds.contains(k) {
                        throw fail("unknown endpoint '\(Log.quoted(k, limit: 40))' (this virtiod makes: \(endpointKinds.joined(separator: ", ")))")
                    }
                    let named = m.endpoints.flatMap { $0.split(separator: "|").map(String.init) }
                    if let k = alternatives.first(where: { named.contains($0) }) ?? (Set(alternatives).count < alternatives.count ? alternatives[0] : nil) {
                        throw fail("endpoint '\(Log.quoted(k, limit: 40))' named twice")
                    }
                    m.endpoints.append(w)
                }
            case "DMAMemory", "DMAMemoryPerQueue":
                let v = try size()
                guard v <= 1 << 30 else { throw fail("\(a.key)= above 1G") }
                if a.key == "DMAMemory" { m.dmaMemory = Int(v) } else { m.dmaMemoryPerQueue = Int(v) }
            case "MemoryMax":
                m.memoryMax = try size()
                guard m.memoryMax >= 8 << 20 else { throw fail("MemoryMax= below 8M leaves a plugin no room to start") }
            case "TasksMax":
                guard let n = UInt64(a.value), n >= 1 else { throw fail("TasksMax= needs a positive number, got '\(a.shown)'") }
                m.tasksMax = n
            case "PrivateNetwork":
                guard let b = INIFile.boolean(a.value) else { throw fail("PrivateNetwork= needs yes or no, got '\(a.shown)'") }
                m.privateNetwork = b
            case "IOFlusher":
                guard let b = INIFile.boolean(a.value) else { throw fail("IOFlusher= needs yes or no, got '\(a.shown)'") }
                m.ioFlusher = b
            case "ProcSubset":
                guard procSubsets.contains(a.value) else { throw fail("ProcSubset= needs pid or all, got '\(a.shown)'") }
                m.procSubset = a.value
            case "RestrictAddressFamilies":
                for w in words() {
                    guard w.hasPrefix("AF_"), w.count > 3, w.dropFirst(3).allSatisfy({ $0.isUppercase || $0.isNumber }) else {
                        throw fail("RestrictAddressFamilies= takes AF_* names, got '\(Log.quoted(w, limit: 40))'")
                    }
                    m.addressFamilies.append(w)
                }
            default:
                throw fail("unknown key '\(Log.quoted(a.key, limit: 40))' in [Plugin]")
            }
        }
        guard !m.exec.isEmpty else { throw ConfigError(file: path, line: plugin.line, reason: "[Plugin] has no Exec=") }
        guard !m.deviceTypes.isEmpty else { throw ConfigError(file: path, line: plugin.line, reason: "[Plugin] has no DeviceType=") }
        return m
    }

    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 32 && s.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "-" || $0 == "_" }
    }

    /// "512", "512K", "8M", "1G" (powers of 1024, as systemd reads sizes).
    static func parseSize(_ s: String) -> UInt64? {
        guard let last = s.last else { return nil }
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let unit = units[Character(last.uppercased())] {
            guard let n = UInt64(s.dropLast()), n <= UInt64.max / unit else { return nil }
            return n * unit
        }
        return UInt64(s)
    }
}
