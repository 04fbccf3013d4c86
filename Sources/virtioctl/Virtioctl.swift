import ArgumentParser
import FoundationEssentials
import Glibc
import VirtiodProtocol

@main
struct Virtioctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "virtioctl",
        abstract: "Query and control virtiod, the userspace virtio driver service.",
        discussion: """
            Exit status: 0 success, 1 failure, 3 virtiod is not running, 4 no such device, \
            5 permission denied (changing verbs need root), 6 virtiod refused the request, \
            64 usage error.
            """,
        subcommands: [List.self, Status.self, Plugins.self, Wait.self, Claim.self, Release.self, Unload.self, Load.self,
                      Reload.self, Restart.self, Metrics.self])

    /// No verb: `list`, as `networkctl` does.
    func run() throws {
        try List.parse([]).run()
    }
}

struct GlobalOptions: ParsableArguments {
    @Flag(help: "Print JSON (the control protocol's objects) instead of text.")
    var json = false

    @Option(help: "virtiod's control socket.")
    var socket = ProcessInfoShim.environment("VIRTIOD_CONTROL_SOCKET") ?? ControlProtocol.defaultSocketPath

    /// One request; exits with virtiod's error (printed, and as JSON with --json).
    func call(_ verb: ControlVerb, device: String? = nil, force: Bool? = nil, plugin: String? = nil,
              release: Bool? = nil, target: String? = nil) throws -> ControlResponse {
        let request = ControlRequest(verb: verb, device: device, force: force, plugin: plugin, release: release, target: target)
        let response: ControlResponse
        do { response = try ControlClient.call(request, socket: socket) } catch { fail(error) }
        if !response.ok, let e = response.error {
            if json { Output.json(response) }
            fail(CLIError(e))
        }
        return response
    }

    /// One request whose failure the caller handles (`wait` retries some).
    func request(_ verb: ControlVerb, device: String? = nil, target: String? = nil) throws(CLIError) -> ControlResponse {
        let response = try ControlClient.call(ControlRequest(verb: verb, device: device, target: target), socket: socket)
        if !response.ok, let e = response.error { throw CLIError(e) }
        return response
    }

    /// What a changing verb did: the response as JSON, or virtiod's sentence.
    func show(_ r: ControlResponse, done: String) {
        if json { Output.json(r) } else { print(r.message ?? done) }
    }

    func fail(_ e: CLIError) -> Never {
        FileHandleShim.stderr("virtioctl: \(e)\n")
        Glibc.exit(e.exitCode)
    }
}

enum ProcessInfoShim {
    static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
}

enum FileHandleShim {
    static func stderr(_ s: String) { _ = s.withCString { write(2, $0, strlen($0)) } }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List virtio PCI functions and what drives them.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let r = try global.call(.list)
        let devices = r.devices ?? []
        if global.json { return Output.json(devices) }
        // What the rest of the system sees of each device: the endpoints
        // virtiod made (vtnet0, /dev/nbd0), else the kernel's interfaces and disks.
        Output.table(header: ["ADDRESS", "TYPE", "STATE", "DRIVER", "PLUGIN", "ENDPOINT"], rows: devices.map { d in
            let seen = d.endpoints.isEmpty ? d.interfaces : d.endpoints.map(\.summary)
            return [d.address, d.type, Output.state(d.state), d.kernelDriver ?? "-",
                    d.plugin.map { p in p.name + (d.driver?.stub == true ? " (stub)" : "") } ?? "-",
                    seen.isEmpty ? "-" : seen.joined(separator: ",")]
        })
        let claimed = devices.filter { $0.plugin != nil }.count
        print("\n\(devices.count) device\(devices.count == 1 ? "" : "s") listed, \(claimed) claimed by virtiod.")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show negotiated features, queues, interrupts, device config and plugin of one or all devices.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "PCI address (or a unique suffix such as 04.0); all devices when omitted.")
    var device: String?

    func run() throws {
        let r = try global.call(.status, device: device)
        let devices = r.devices ?? []
        if global.json { return device != nil && devices.count == 1 ? Output.json(devices[0]) : Output.json(devices) }
        for (i, d) in devices.enumerated() {
            if i > 0 { print("") }
            show(d)
        }
    }

    func show(_ d: DeviceReport) {
        var lines: [(String, String)] = []
        lines.append(("State", Output.state(d.state) + (d.driver?.stub == true ? " (stub plugin)" : "")))
        if let reason = d.reason { lines.append(("Reason", reason)) }
        lines.append(("Device", "\(d.deviceID), kernel driver \(d.kernelDriver ?? "none")"))
        lines.append(("IOMMU group", d.iommuGroup.map(String.init) ?? "-"))
        if let dma = d.dma {
            lines.append(("DMA", dma == "physical" ? "guest-physical addresses (no IOMMU: hugepages, no isolation)" : "through the IOMMU"))
        }
        if let rule = d.rule { lines.append(("Config", rule)) }
        if !d.interfaces.isEmpty { lines.append(("Interfaces", d.interfaces.joined(separator: ", "))) }
        for (i, e) in d.endpoints.enumerated() {
            let facts = e.details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            lines.append((i == 0 ? "Endpoints" : "", "\(e.summary) (\(e.kind))" + (facts.isEmpty ? "" : ": \(facts)")))
        }
        if let p = d.plugin {
            var s = "\(p.name) (\(p.executable))"
            if let pid = p.pid { s += ", pid \(pid)" }
            if let up = p.uptimeSeconds { s += ", up \(Output.duration(up))" }
            s += ", \(p.restarts) restart\(p.restarts == 1 ? "" : "s")"
            if let n = p.reloads, n > 0 {
                s += ", \(n) reload\(n == 1 ? "" : "s")" + (p.lastReloadPauseMS.map { " (last pause \(($0 * 10).rounded() / 10) ms)" } ?? "")
            }
            lines.append(("Plugin", s))
            if let e = p.lastExit { lines.append(("Last exit", e)) }
            if let r = p.lastReload { lines.append(("Last reload", r)) }
            if let u = p.unit { lines.append(("Unit", u)) }
        }
        if let r = d.driver {
            lines.append(("Status", r.status.joined(separator: " ")))
            lines.append(("Offered", r.offered.names.joined(separator: " ")))
            lines.append(("Negotiated", r.negotiated.names.joined(separator: " ")))
            if r.interruptMode == "msix" {
                lines.append(("Interrupts", "MSI-X, \(r.msixVectors) vector\(r.msixVectors == 1 ? "" : "s")"
                              + (r.configVector.map { ", config changes on \($0) (\(r.configInterrupts) so far)" } ?? "")))
            } else {
                lines.append(("Interrupts", "\(r.interruptMode == "intx" ? "INTx (no MSI-X)" : "none"), \(r.configInterrupts) config changes so far"))
            }
            for q in r.queues {
                lines.append((q.index == r.queues.first?.index ? "Queues" : "",
                              "\(q.index) \(q.name): \(q.size) entries (max \(q.maxSize)), \(q.layout), "
                              + (q.msixVector.map { "vector \($0), \(q.interrupts) interrupts" } ?? "no vector")))
                if let c = q.counters, !c.isEmpty {
                    lines.append(("", "  " + c.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
                }
            }
            for (k, v) in r.config.sorted(by: { $0.key < $1.key }) {
                lines.append((k == r.config.keys.sorted().first ? "Device config" : "", "\(k) = \(v)"))
            }
            lines.append(("Registers", r.registerAccess + (r.registerErrors.map { $0 > 0 ? ", \($0) failed accesses" : "" } ?? "")))
        }
        let width = lines.map(\.0.count).max() ?? 0
        print("\(Output.dot(d.state)) \(d.address) (\(d.type))")
        for (k, v) in lines {
            let label = k.isEmpty ? String(repeating: " ", count: width + 1) : String(repeating: " ", count: width - k.count) + k + ":"
            print("  \(label) \(v)")
        }
    }
}

struct Plugins: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List device plugins: manifest, executable, version, device types, devices and processes.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let plugins = try global.call(.plugins).plugins ?? []
        if global.json { return Output.json(plugins) }
        Output.table(header: ["PLUGIN", "TYPES", "KIND", "VERSION", "DEVICES", "PIDS", "MANIFEST", "EXECUTABLE"], rows: plugins.map { p in
            [p.name, p.deviceTypes.joined(separator: ","),
             p.stub.map { $0 ? "stub" : "driver" } ?? "-",
             p.version ?? "-",
             p.devices.isEmpty ? "-" : p.devices.joined(separator: ",") + (p.unloaded ? " (unloaded)" : ""),
             p.pids.isEmpty ? "-" : p.pids.map(String.init).joined(separator: ","),
             (p.manifest ?? Output.paint("(none)", "31")) + (p.overrides.isEmpty ? "" : " (overrides \(p.overrides.joined(separator: ", ")))"),
             p.installed ? p.executable : Output.paint("\(p.executable) (missing)", "31")]
        })
    }
}

struct Claim: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Take a device from its kernel driver and start its plugin (root).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "PCI address (or a unique suffix).") var device: String
    @Flag(help: "Claim even if it backs a mounted filesystem or the default route.") var force = false

    func run() throws {
        let r = try global.call(.claim, device: device, force: force ? true : nil)
        global.show(r, done: "claimed")
    }
}

struct Release: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop a device's plugin and give the device back to its kernel driver (root).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "PCI address (or a unique suffix).") var device: String

    func run() throws {
        let r = try global.call(.release, device: device)
        global.show(r, done: "released")
    }
}

struct Unload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop a plugin's processes; its devices stay claimed, reset and quiet (root).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Plugin name (as `virtioctl plugins` lists them).") var plugin: String
    @Flag(help: "Also give its devices back to their kernel drivers.") var release = false

    func run() throws {
        let r = try global.call(.unload, plugin: plugin, release: release ? true : nil)
        global.show(r, done: "unloaded")
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace a plugin's processes by fresh ones (e.g. after an upgrade) without resetting the devices (root).",
        discussion: """
            The new process starts beside the old one; the old one pauses, hands over its queue state, \
            and the new one continues. If the new one fails to start or refuses the state, the old one \
            continues (roll-back) and the command fails.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A plugin name (as `virtioctl plugins` lists them: all its devices) or a device (PCI address or unique suffix).")
    var target: String?
    @Flag(help: "Every plugin that drives a device (after a package upgrade), once no device is in transition.")
    var all = false

    func validate() throws {
        guard (target != nil) != all else { throw ValidationError("give a plugin or a device, or --all") }
    }

    func run() throws {
        guard all else {
            let r = try global.call(.reload, target: target)
            return global.show(r, done: "reloaded")
        }
        try reloadAll()
    }

    /// One reload per plugin in use, each reported; the others go on when
    /// one fails (its old processes keep running), and the exit says so.
    func reloadAll() throws {
        var settle = try Wait.parse(["--timeout", "60", "--socket", global.socket])
        settle.global.json = false
        try settle.run()
        let plugins = try global.call(.plugins).plugins ?? []
        var failures: [String] = [], done: [ControlResponse] = []
        for p in plugins where !p.devices.isEmpty && !p.unloaded {
            do throws(CLIError) {
                let r = try global.request(.reload, target: p.name)
                done.append(r)
                if !global.json { print("\(p.name): " + (r.message ?? "reloaded")) }
            } catch {
                failures.append("\(p.name): \(error)")
                FileHandleShim.stderr("virtioctl: \(p.name): \(error)\n")
            }
        }
        if global.json { Output.json(done) }
        if done.isEmpty && failures.isEmpty && !global.json { print("no plugin drives a device: nothing to reload") }
        if !failures.isEmpty { global.fail(.failed("\(failures.count) plugin\(failures.count == 1 ? "" : "s") not reloaded")) }
    }
}

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start an unloaded plugin again on its claimed devices (root).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Plugin name (as `virtioctl plugins` lists them).") var plugin: String

    func run() throws {
        let r = try global.call(.load, plugin: plugin)
        global.show(r, done: "loaded")
    }
}

struct Restart: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a device's plugin again now, with a device reset (root).",
        discussion: """
            After its plugin failed too often (RestartLimitBurst= failures within RestartLimitIntervalSec=), \
            a device stays failed; this tries again, counting failures afresh. A running plugin is stopped \
            first. To replace a running plugin without a reset, use reload.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "PCI address (or a unique suffix).") var device: String

    func run() throws {
        let r = try global.call(.restart, device: device)
        global.show(r, done: "restarted")
    }
}
