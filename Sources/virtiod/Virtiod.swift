import ArgumentParser
import FoundationEssentials
import VirtiodProtocol
import VirtiodSupervisor

@main
struct Virtiod: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "virtiod",
        abstract: "Userspace driver service for virtio PCI devices.",
        subcommands: [Serve.self, Discover.self, MountShare.self, UnmountShare.self])
}

/// `virtiod serve`: the service systemd runs (Type=notify).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the supervisor: claim devices per the configuration, run their plugins, serve virtioctl.")

    @Option(help: "Main configuration file.") var config = "/etc/virtiod/virtiod.conf"
    @Option(help: "Drop-in folder (*.conf, read after the main file in name order).") var configDir = "/etc/virtiod/virtiod.conf.d"
    @Option(help: "Control socket path.") var socket = "/run/virtiod/control"
    @Option(name: .customLong("plugin-manifests"), parsing: .upToNextOption,
            help: "Plugin manifest folders (NAME.plugin), highest precedence first.")
    var manifestDirectories: [String] = PluginCatalog.defaultDirectories

    func run() throws {
        var options = SupervisorOptions()
        options.configFile = config
        options.configDirectory = configDir
        options.socketPath = socket
        options.manifestDirectories = manifestDirectories
        try Supervisor(options: options).run()
    }
}

/// `virtiod discover`: read-only, one-shot discovery; safe on any machine.
struct Discover: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List virtio PCI functions, their drivers and IOMMU groups (read-only).")

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let functions = try Discovery.virtioFunctions()
        if json {
            print(String(decoding: try ControlWire.prettyEncoder.encode(functions), as: UTF8.self))
            return
        }
        let rows = functions.map { f in
            [f.address, f.type ?? "type\(f.typeID.map(String.init) ?? "?")",
             String(f.vendorID, radix: 16) + ":" + String(f.deviceID, radix: 16), f.driver ?? "-", f.owner.rawValue,
             f.iommuGroup.map(String.init) ?? "-", f.numaNode.map(String.init) ?? "-",
             (f.interfaces + f.blockDevices).joined(separator: ",")]
        }
        printTable(header: ["ADDRESS", "TYPE", "ID", "DRIVER", "OWNER", "IOMMU", "NUMA", "KERNEL DEVICES"], rows: rows)
        print("\n\(functions.count) virtio function\(functions.count == 1 ? "" : "s") listed.")
    }
}

/// A table in the style of `networkctl list`: left-aligned columns, two spaces apart.
func printTable(header: [String], rows: [[String]]) {
    let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
    for row in [header] + rows {
        let line = row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
        }.joined(separator: "  ")
        print(line)
    }
}
