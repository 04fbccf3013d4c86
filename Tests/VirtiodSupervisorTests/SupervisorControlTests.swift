import Foundation
import Testing
import VirtiodProtocol
@testable import VirtiodSupervisor

/// Control verbs and claim checks that need no device: permissions,
/// unknown devices, protocol versions, and the refusal texts.
@Suite struct SupervisorControlTests {
    func supervisor() -> Supervisor {
        var o = SupervisorOptions()
        o.manifestDirectories = [ManifestFixture.shared.directory]
        return Supervisor(options: o)
    }

    @Test func changingVerbsNeedRoot() {
        let s = supervisor()
        s.loadManifests()
        for verb in [ControlVerb.claim, .release] {
            let r = s.handle(ControlRequest(verb: verb, device: "0000:00:03.0"), uid: 1000)
            #expect(!r.ok && r.error?.code == .permissionDenied)
        }
        #expect(s.handle(ControlRequest(verb: .list), uid: 1000).ok)
        // Every manifest is a plugin; the list comes from the manifests alone.
        let plugins = s.handle(ControlRequest(verb: .plugins), uid: 1000).plugins ?? []
        #expect(plugins.map(\.name) == ["alpha", "beta"])
        #expect(plugins[0].manifest == ManifestFixture.shared.directory + "/alpha.plugin" && plugins[0].deviceTypes == ["net"])
        #expect(plugins[0].installed == false && plugins[0].endpoints == ["tap"])
        #expect(s.handle(ControlRequest(verb: .unload, plugin: "gamma"), uid: 0).error?.code == .badRequest)
    }

    @Test func unknownDevicesAndVersions() {
        let s = supervisor()
        #expect(s.handle(ControlRequest(verb: .status, device: "0000:99:00.0"), uid: 0).error?.code == .noSuchDevice)
        #expect(s.handle(ControlRequest(verb: .claim), uid: 0).error?.code == .badRequest)
        var future = ControlRequest(verb: .list)
        future.version = 99
        #expect(s.handle(future, uid: 0).error?.code == .unsupportedVersion)
    }

    @Test func requestsRoundTripAsJSONLines() throws {
        let line = try ControlWire.encoder.encode(ControlRequest(verb: .claim, device: "03.0", force: true))
        #expect(String(decoding: line, as: UTF8.self) == #"{"device":"03.0","force":true,"verb":"claim","version":2}"#)
        let back = try ControlWire.decoder.decode(ControlRequest.self, from: line)
        #expect(back.verb == .claim && back.device == "03.0" && back.force == true)
        #expect(throws: (any Error).self) { try ControlWire.decoder.decode(ControlRequest.self, from: Data(#"{"version":2,"verb":"frob"}"#.utf8)) }
    }

    func function(group peers: [String] = [], interfaces: [String] = [], disks: [String] = []) -> VirtioFunction {
        VirtioFunction(address: "0000:00:03.0", vendor: "0x1af4", device: "0x1042", subsystemDevice: nil, driver: "virtio-pci",
                       iommuGroup: 3, iommuGroupMembers: ["0000:00:03.0"] + peers, numaNode: nil,
                       interfaces: interfaces, blockDevices: disks)!
    }

    @Test func refusalsSayWhyAndWhatToDo() throws {
        let checks = ClaimChecks()
        #expect(checks.groupPeers(function()) == nil)
        #expect(checks.groupPeers(function(group: ["0000:00:03.1"]))?.contains("also holds 0000:00:03.1") == true)
        #expect(checks.accessPlatform(offered: (1 << 32) | (1 << 33), address: "a") == nil)
        let why = try #require(checks.accessPlatform(offered: 1 << 32, address: "0000:00:09.0"))
        #expect(why.contains("ACCESS_PLATFORM") && why.contains("iommu_platform=on") && why.contains("UnsafeNoIOMMU=yes"))
        // No IOMMU: refused unless the machine opted in, and the refusal names the setting.
        let alone = VirtioFunction(address: "0000:00:03.0", vendor: "0x1af4", device: "0x1041", subsystemDevice: nil,
                                   driver: "virtio-pci", iommuGroup: nil, iommuGroupMembers: [], numaNode: nil)!
        #expect(checks.groupPeers(alone)?.contains("UnsafeNoIOMMU=yes") == true)
        #expect(checks.groupPeers(alone, noIOMMU: true) == nil)
        // Physical DMA: ACCESS_PLATFORM is not needed, VERSION_1 still is.
        #expect(checks.accessPlatform(offered: 1 << 32, address: "a", physicalDMA: true) == nil)
        #expect(checks.accessPlatform(offered: 1 << 5, address: "a", physicalDMA: true)?.contains("VERSION_1") == true)
    }

    @Test func mountsAndDefaultRoutesAreFoundInProcAndSys() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("virtiod-checks-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/sys/class/block/vda/vda1", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/proc/self", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/proc/net", withIntermediateDirectories: true)
        try "254:0\n".write(toFile: root + "/sys/class/block/vda/dev", atomically: true, encoding: .utf8)
        try "254:1\n".write(toFile: root + "/sys/class/block/vda/vda1/dev", atomically: true, encoding: .utf8)
        try "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n".write(toFile: root + "/proc/self/mountinfo", atomically: true, encoding: .utf8)
        try "Filename Type Size Used Priority\n".write(toFile: root + "/proc/swaps", atomically: true, encoding: .utf8)
        try "Iface\tDestination\tGateway\nenp0s3\t00000000\t0102A8C0\n".write(toFile: root + "/proc/net/route", atomically: true, encoding: .utf8)
        try "".write(toFile: root + "/proc/net/ipv6_route", atomically: true, encoding: .utf8)
        var checks = ClaimChecks()
        checks.procRoot = root + "/proc"
        checks.sysfs = root + "/sys"
        let mounted = try #require(checks.mountedFilesystems(function(disks: ["vda"])))
        #expect(mounted.contains("/dev/vda1 on /") && mounted.contains("Force=yes"))
        #expect(checks.mountedFilesystems(function(disks: ["vdb"])) == nil)
        let route = try #require(checks.defaultRoute(function(interfaces: ["enp0s3"])))
        #expect(route.contains("enp0s3") && route.contains("default route"))
        #expect(checks.defaultRoute(function(interfaces: ["enp0s4"])) == nil)
    }
}
