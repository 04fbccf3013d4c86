import Foundation
import SystemPackage
import Testing
import VirtioSystem
@testable import VirtiodSupervisor

/// A folder of manifests for tests (made once per test process).
final class ManifestFixture: Sendable {
    static let shared = ManifestFixture()
    let directory: String
    init() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("virtiod-manifests-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try? "[Plugin]\nExec=/nonexistent/alpha\nDeviceType=net\nEndpoints=tap\n".write(toFile: directory + "/alpha.plugin", atomically: true, encoding: .utf8)
        try? "[Plugin]\nExec=/nonexistent/beta\nDeviceType=4 block\n".write(toFile: directory + "/beta.plugin", atomically: true, encoding: .utf8)
    }
}

@Suite struct PluginManifestTests {
    let kinds = ["tap", "random"]

    func parse(_ text: String, name: String = "demo") throws(ConfigError) -> PluginManifest {
        try PluginManifest.parse(text, path: "/etc/virtiod/plugins/\(name).plugin", endpointKinds: kinds)
    }

    @Test func fullManifest() throws {
        let m = try parse("""
            # a comment
            [Plugin]
            Name=demo
            Description=Demo driver
            Exec=/usr/libexec/virtiod/virtiod-demo
            DeviceType=net 4
            Endpoints=tap random
            DMAMemory=1M
            DMAMemoryPerQueue=8M
            MemoryMax=64M
            TasksMax=8
            PrivateNetwork=no
            RestrictAddressFamilies=AF_NETLINK
            ProcSubset=all
            IOFlusher=yes
            """)
        #expect(m.name == "demo" && m.description == "Demo driver" && m.exec == "/usr/libexec/virtiod/virtiod-demo")
        #expect(m.deviceTypes == [1, 4] && m.deviceTypeNames == ["net", "rng"] && m.endpoints == ["tap", "random"])
        #expect(m.dmaSize(queues: 4) == (1 << 20) + 4 * (8 << 20) && m.dmaSize(queues: 0) == 9 << 20)
        #expect(m.memoryMax == 64 << 20 && m.tasksMax == 8 && !m.privateNetwork && m.addressFamilies == ["AF_NETLINK"])
        #expect(m.procSubset == "all" && m.ioFlusher)
        // The unit grants CAP_SYS_RESOURCE (24) in the init user namespace and allows capset to drop it.
        let props = UnitLauncher.properties(m, address: "0000:00:05.0", socket: UnixSocket(fd: FileDescriptor(rawValue: 0)))
        #expect(props.contains { $0.0 == "AmbientCapabilities" && "\($0.1)" == "\(UnitValue.u64(1 << 24))" })
        #expect(props.contains { $0.0 == "PrivateUsers" && "\($0.1)" == "\(UnitValue.bool(false))" })
        #expect(props.last.map { "\($0.1)" } == "\(UnitValue.list(allow: true, ["capset"]))" || props.contains { "\($0.1)".contains("capset") })
        let plain = try parse("[Plugin]\nExec=/x/y\nDeviceType=block\n")
        #expect(!plain.ioFlusher)
        let none = UnitLauncher.properties(plain, address: "0000:00:05.0", socket: UnixSocket(fd: FileDescriptor(rawValue: 0)))
        #expect(none.contains { $0.0 == "AmbientCapabilities" && "\($0.1)" == "\(UnitValue.u64(0))" })
        #expect(!none.contains { "\($0.1)".contains("capset") })
    }

    @Test func alternativesAreOneEndpoint() throws {
        let m = try parse("[Plugin]\nExec=/x\nDeviceType=block\nEndpoints=tap|random\n")
        #expect(m.endpoints == ["tap|random"])
    }

    /// `ublk|nbd`: the device's Endpoint= wins; else the first this machine
    /// has (tap always is), else the last.
    @Test func theEndpointOfAlternativesIsChosen() throws {
        #expect(try EndpointKinds.choose("nbd", preferred: nil).kind == "nbd")
        #expect(try EndpointKinds.choose("ublk|nbd", preferred: "nbd").kind == "nbd")
        #expect(try EndpointKinds.choose("ublk|nbd", preferred: "ublk").kind == "ublk")
        #expect(try EndpointKinds.choose("tap|nbd", preferred: nil).kind == "tap")
        #expect(try EndpointKinds.choose("ublk|nbd", preferred: nil).kind == (UblkEndpoint.available ? "ublk" : "nbd"))
        // A device rule's kind the manifest does not offer is refused, naming both.
        do {
            _ = try EndpointKinds.choose("ublk|nbd", preferred: "tap")
            Issue.record("Endpoint=tap accepted for ublk|nbd")
        } catch {
            #expect("\(error)".contains("Endpoint=tap is not one the plugin offers (ublk, nbd)"), "\(error)")
        }
    }

    @Test func crlfFilesParse() throws {
        let m = try parse("[Plugin]\r\nExec=/x/y\r\nDeviceType=block\r\n")
        #expect(m.exec == "/x/y" && m.deviceTypes == [2])
    }

    @Test(arguments: [
        ("[Plugin]\nExec=relative/path\nDeviceType=net\n", 2, "absolute path"),
        ("[Plugin]\nExec=/x\nDeviceType=frobnicator\n", 3, "unknown device type"),
        ("[Plugin]\nExec=/x\nDeviceType=net\nEndpoints=nbd\n", 4, "unknown endpoint 'nbd'"),
        ("[Plugin]\nExec=/x\nDeviceType=net\nEndpoints=tap|nbd\n", 4, "unknown endpoint 'nbd'"),
        ("[Plugin]\nExec=/x\nDeviceType=net\nEndpoints=tap|\n", 4, "unknown endpoint ''"),
        ("[Plugin]\nExec=/x\nDeviceType=net\nEndpoints=random tap|random\n", 4, "endpoint 'random' named twice"),
        ("[Plugin]\nExec=/x\nDeviceType=net\nEndpoints=tap|tap\n", 4, "endpoint 'tap' named twice"),
        ("[Plugin]\nExec=/x\nDeviceType=net\nColour=blue\n", 4, "unknown key 'Colour'"),
        ("[Plugin]\nDeviceType=net\n", 1, "no Exec="),
        ("[Plugin]\nExec=/x\n", 1, "no DeviceType="),
        ("[Plugin]\nName=other\nExec=/x\nDeviceType=net\n", 2, "differs from the file name"),
        ("[Plugin]\nExec=/x\nDeviceType=net\nMemoryMax=lots\n", 4, "needs a size"),
        ("[Service]\nExec=/x\n", 1, "no [Plugin] section"),
        ("[Plugin]\nExec=/x\nDeviceType=net\n[Extra]\n", 4, "unknown section [Extra]"),
        ("[Plugin]\nthis is not a line\n", 2, "expected Key=Value"),
    ])
    func errorsNameTheLine(text: String, line: Int, reason: String) {
        do {
            _ = try parse(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.line == line && error.reason.contains(reason), "\(error)")
            #expect(error.description.hasPrefix("/etc/virtiod/plugins/demo.plugin:\(line): "))
        }
    }

    @Test func adminManifestsOverridePackagedOnesAndBrokenOnesAreSkipped() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("virtiod-catalog-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let etc = root + "/etc", usr = root + "/usr"
        for d in [etc, usr] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        func write(_ dir: String, _ name: String, _ text: String) throws {
            try text.write(toFile: "\(dir)/\(name).plugin", atomically: true, encoding: .utf8)
        }
        try write(usr, "net", "[Plugin]\nExec=/usr/libexec/virtiod/virtiod-net\nDeviceType=net\nEndpoints=tap\n")
        try write(etc, "net", "[Plugin]\nExec=/usr/local/libexec/virtiod-net\nDeviceType=net\nEndpoints=tap\n")
        try write(usr, "block", "[Plugin]\nExec=/usr/libexec/virtiod/virtiod-block\nDeviceType=block\n")
        try write(etc, "block", "[Plugin]\nExec=/x\nDeviceType=block\nBogus=1\n")
        try write(usr, "rng", "[Plugin]\nExec=/usr/libexec/virtiod/virtiod-rng\nDeviceType=rng\nEndpoints=random\n")
        try "not a manifest".write(toFile: usr + "/README", atomically: true, encoding: .utf8)
        let c = PluginCatalog.load(directories: [etc, root + "/missing", usr], endpointKinds: kinds)
        #expect(c["net"]?.exec == "/usr/local/libexec/virtiod-net" && c.overridden["net"] == [usr + "/net.plugin"])
        // A broken admin manifest is reported and does not bring the packaged one back.
        #expect(c["block"] == nil && c.errors.count == 1 && c.errors[0].file == etc + "/block.plugin" && c.errors[0].line == 4)
        #expect(c["rng"]?.endpoints == ["random"] && c.candidates(for: 4).map(\.name) == ["rng"])
        #expect(c.candidates(for: 2).isEmpty && c.manifests.count == 2)
    }
}

/// The configuration example in the README is what users copy: it must parse.
@Suite struct ReadmeExampleTests {
    @Test func readmeConfigExampleParses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let blocks = readme.components(separatedBy: "```ini\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
        try #require(!blocks.isEmpty, "no ```ini block in README.md")
        for block in blocks {
            let rules = try ClaimPolicy.parse(block, file: "README.md")
            #expect(!rules.isEmpty && rules.allSatisfy { $0.claim })
        }
    }
}
