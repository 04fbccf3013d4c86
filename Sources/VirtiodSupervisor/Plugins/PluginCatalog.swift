import FoundationEssentials
import Glibc

/// Every plugin manifest virtiod found, read at start and on `systemctl
/// reload`. Folders are read in precedence order (admin first): a manifest
/// overrides one of the same file name in a later folder, as systemd's unit
/// folders do. A bad manifest is reported with file:line and skipped; it
/// never stops virtiod or the other plugins.
public struct PluginCatalog: Sendable {
    /// Default folders, highest precedence first.
    public static let defaultDirectories = ["/etc/virtiod/plugins", "/usr/local/lib/virtiod/plugins", "/usr/lib/virtiod/plugins"]

    public var manifests: [String: PluginManifest] = [:]
    /// Manifests hidden by one of the same name in a folder read earlier.
    public var overridden: [String: [String]] = [:]
    public var errors: [ConfigError] = []

    public init() {}

    public static func load(directories: [String], endpointKinds: [String]) -> PluginCatalog {
        var catalog = PluginCatalog()
        let fm = FileManager.default
        for dir in directories {
            guard let names = try? fm.contentsOfDirectory(atPath: dir) else { continue }
            for file in names.filter({ $0.hasSuffix(".plugin") }).sorted() {
                let path = dir + "/" + file
                let stem = String(file.dropLast(7))
                if catalog.manifests[stem] != nil || catalog.broken.contains(stem) {
                    catalog.overridden[stem, default: []].append(path)
                    continue
                }
                do {
                    catalog.manifests[stem] = try PluginManifest.parse(try INIFile.read(path), path: path,
                                                                       endpointKinds: endpointKinds)
                } catch {
                    // Skipped; and a broken admin manifest does not bring
                    // back the packaged one it was meant to replace.
                    catalog.errors.append(error)
                    catalog.broken.insert(stem)
                }
            }
        }
        return catalog
    }

    /// Names whose highest-precedence manifest is broken (skipped, and not
    /// replaced by a lower one).
    public private(set) var broken: Set<String> = []

    public subscript(name: String) -> PluginManifest? { manifests[name] }

    /// The manifests that drive device type `typeID`, by name.
    public func candidates(for typeID: UInt32?) -> [PluginManifest] {
        manifests.values.filter { $0.drives(typeID) }.sorted { $0.name < $1.name }
    }
}
