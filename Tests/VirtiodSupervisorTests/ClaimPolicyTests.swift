import Foundation
import Testing
import VirtiodSupervisor

@Suite struct ClaimPolicyTests {
    func function(_ address: String, _ device: String) -> VirtioFunction {
        VirtioFunction(address: address, vendor: "0x1af4", device: device, subsystemDevice: nil, driver: "virtio-pci",
                       iommuGroup: 1, iommuGroupMembers: [address], numaNode: nil)!
    }

    @Test func parsesDeviceSections() throws {
        let rules = try ClaimPolicy.parse("""
            # claim the first NIC
            [Device]
            Address=0000:00:0[12].0
            Type=net
            Claim=yes
            InterfaceName=vtnet0
            HeartbeatSec=6
            Option=mtu=9000

            ; and never the disk
            [Device]
            Type=block
            Serial=virtiod-blk0
            Claim=no
            MACAddress=52:54:00:AB:cd:01
            """, file: "/etc/virtiod/virtiod.conf")
        #expect(rules.count == 2)
        #expect(rules[0].address == "0000:00:0[12].0" && rules[0].claim && rules[0].interfaceName == "vtnet0")
        #expect(rules[0].options == ["mtu": "9000"] && rules[0].origin == "/etc/virtiod/virtiod.conf:2")
        #expect(rules[1].macAddress == "52:54:00:ab:cd:01" && !rules[1].claim)
        #expect(rules[0].heartbeatTimeout == 6 && rules[1].heartbeatTimeout == nil)
    }

    @Test func serviceSectionSetsTheMachineWideNoIOMMUOptIn() throws {
        var service = ServiceSettings()
        let rules = try ClaimPolicy.parse("[Service]\nUnsafeNoIOMMU=yes\n[Device]\nType=net\nClaim=yes", file: "f", service: &service)
        #expect(rules.count == 1 && service.unsafeNoIOMMU && service.unsafeNoIOMMUOrigin == "f:2")
        _ = try ClaimPolicy.parse("[Service]\nUnsafeNoIOMMU=no", file: "g", service: &service)
        #expect(!service.unsafeNoIOMMU, "the last file read wins")
    }

    @Test(arguments: [
        ("[Service]\nUnsafeNoIOMMU=perhaps", 2, "UnsafeNoIOMMU= needs yes or no"),
        ("[Service]\nColour=blue", 2, "unknown key 'Colour' in [Service]"),
        ("[Device\nType=net", 1, "malformed section header"),
        ("[Device]\nType net", 2, "expected Key=Value"),
        ("Type=net", 1, "outside any section"),
        ("[Devices]\nType=net", 1, "unknown section [Devices]"),
        ("[Device]\nType=net\nColour=blue", 3, "unknown key 'Colour'"),
        ("[Device]\nType=net\nClaim=maybe", 3, "Claim= needs yes or no"),
        ("[Device]\nType=nett", 2, "unknown device type 'nett'"),
        ("[Device]\nMACAddress=52:54:00:12:34", 2, "MACAddress= needs"),
        ("[Device]\nClaim=yes", 1, "would match nothing"),
        ("[Device]\nType=net\nInterfaceName=a very long name", 3, "not a valid interface name"),
        ("[Device]\nType=net\nOption=novalue", 3, "Option= needs key=value"),
        ("[Device]\nType=block\nEndpoint=iscsi", 3, "Endpoint= needs one of tap, nbd, ublk"),
        ("[Device]\nType=net\nHeartbeatSec=1", 3, "HeartbeatSec= needs seconds from 2 to 3600"),
        ("[Device]\nType=net\nHeartbeatSec=soon", 3, "HeartbeatSec= needs seconds"),
        ("[Device]\nType=net\nRestartLimitBurst=0", 3, "RestartLimitBurst= needs a number from 1"),
        ("[Device]\nType=net\nRestartLimitIntervalSec=forever", 3, "RestartLimitIntervalSec= needs seconds"),
        ("[Device]\nType=\\", 2, "continuation at end of file"),
        ("[Device]\nSerial=a\u{0}b\nClaim=yes", 2, "control character U+0"),
        ("[Device]\nSerial=" + String(repeating: "x", count: 5000), 2, "longer than 4096"),
        ("[Device]\nMACAddress=52:54:00:12:34:01\nInterfaceName=vt0\n[Device]\nType=net\nInterfaceName=vt0", 6,
         "InterfaceName=vt0 is already given at /etc/virtiod/virtiod.conf.d/50-test.conf:3"),
        ("[Device]\r\nType=net\r\nClaim=perhaps\r\n", 3, "Claim= needs yes or no, got 'perhaps'"),
    ])
    func malformedLinesNameFileAndLine(text: String, line: Int, reason: String) {
        do {
            _ = try ClaimPolicy.parse(text, file: "/etc/virtiod/virtiod.conf.d/50-test.conf")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.file == "/etc/virtiod/virtiod.conf.d/50-test.conf")
            #expect(error.line == line, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
            #expect(error.description.hasPrefix("/etc/virtiod/virtiod.conf.d/50-test.conf:\(line): "))
            // Whatever the input, the message stays short and printable.
            #expect(error.description.count < 300 && !error.description.unicodeScalars.contains { $0.value < 0x20 })
        }
    }

    @Test func continuationLinesJoin() throws {
        let rules = try ClaimPolicy.parse("[Device]\nOption=cmd=a \\\n  b\nType=net", file: "f")
        #expect(rules[0].options["cmd"] == "a  b")
    }

    @Test func defaultConfigurationClaimsNothing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("virtiod-conf-\(getpid())-empty").path
        let policy = try ClaimPolicy.load(main: dir + "/virtiod.conf", dropInDirectory: dir + "/virtiod.conf.d")
        #expect(policy.rules.isEmpty)
        #expect(policy.rule(for: function("0000:00:01.0", "0x1041")) == nil)
    }

    @Test func dropInsLoadInOrderAndTheLastMatchWins() throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("virtiod-conf-\(getpid())").path
        try? fm.removeItem(atPath: dir)
        try fm.createDirectory(atPath: dir + "/virtiod.conf.d", withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: dir) }
        try "[Device]\nType=net\nClaim=yes\nInterfaceName=vtnet0\n".write(toFile: dir + "/virtiod.conf", atomically: true, encoding: .utf8)
        try "[Device]\nAddress=0000:00:02.0\nClaim=no\n".write(toFile: dir + "/virtiod.conf.d/20-keep.conf", atomically: true, encoding: .utf8)
        try "[Device]\nAddress=0000:00:09.0\nClaim=yes\n".write(toFile: dir + "/virtiod.conf.d/10-other.conf", atomically: true, encoding: .utf8)
        try "ignored, not .conf".write(toFile: dir + "/virtiod.conf.d/README", atomically: true, encoding: .utf8)
        let policy = try ClaimPolicy.load(main: dir + "/virtiod.conf", dropInDirectory: dir + "/virtiod.conf.d")
        #expect(policy.rules.map(\.origin) == [dir + "/virtiod.conf:1", dir + "/virtiod.conf.d/10-other.conf:1",
                                               dir + "/virtiod.conf.d/20-keep.conf:1"])
        #expect(policy.rule(for: function("0000:00:01.0", "0x1041"))?.claim == true)
        #expect(policy.rule(for: function("0000:00:02.0", "0x1041"))?.claim == false) // later drop-in overrides
        #expect(policy.rule(for: function("0000:00:03.0", "0x1042")) == nil)            // a disk: no rule, not claimed
        // A broken drop-in is reported with its file and line.
        try "[Device]\nType=net\nClaim=perhaps\n".write(toFile: dir + "/virtiod.conf.d/30-bad.conf", atomically: true, encoding: .utf8)
        #expect(throws: ConfigError(file: dir + "/virtiod.conf.d/30-bad.conf", line: 3, reason: "Claim= needs yes or no, got 'perhaps'")) {
            try ClaimPolicy.load(main: dir + "/virtiod.conf", dropInDirectory: dir + "/virtiod.conf.d")
        }
    }

    @Test func identityMatches() throws {
        let rules = try ClaimPolicy.parse("[Device]\nMACAddress=52:54:00:12:34:01\nClaim=yes\n[Device]\nSerial=disk7\nClaim=yes", file: "f")
        let policy = ClaimPolicy(rules: rules)
        let nic = function("0000:00:01.0", "0x1041")
        #expect(policy.rule(for: nic, identity: DeviceIdentity(macAddress: "52:54:00:12:34:01"))?.claim == true)
        #expect(policy.rule(for: nic, identity: DeviceIdentity(macAddress: "52:54:00:12:34:02")) == nil)
        #expect(policy.rule(for: nic) == nil) // MAC unknown: no match
        #expect(policy.rule(for: function("0000:00:03.0", "0x1042"), identity: DeviceIdentity(serial: "disk7")) != nil)
    }
}

@Suite struct ShippedConfigTests {
    @Test func defaultConfigParsesAndClaimsNothing() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = repo.appendingPathComponent("Units/virtiod.conf").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(try ClaimPolicy.parse(text, file: path).isEmpty)
        // Its commented example is valid when uncommented.
        let example = text.split(separator: "\n").filter { $0.hasPrefix("#[") || $0.hasPrefix("#MAC") || $0.hasPrefix("#Claim") || $0.hasPrefix("#Inter") }
            .map { String($0.dropFirst()) }.joined(separator: "\n")
        let rules = try ClaimPolicy.parse(example, file: "example")
        #expect(rules.count == 1 && rules[0].claim && rules[0].interfaceName == "vtnet0")
    }
}

@Suite struct ConfigFileLimitTests {
    @Test func bigFilesAreRefusedUnread() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("virtiod-big-\(getpid()).conf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(repeating: UInt8(ascii: "x"), count: 2 << 20).write(to: URL(fileURLWithPath: path))
        #expect(throws: ConfigError.self) { _ = try INIFile.read(path) }
        do { _ = try INIFile.read(path) } catch { #expect(error.line == 0 && error.reason.contains("larger than 1024 KiB")) }
    }

    @Test func quotedTextIsShortAndPrintable() {
        let q = Log.quoted("a\u{0}b\u{1b}[31m" + String(repeating: "z", count: 500), limit: 20)
        #expect(q.hasPrefix("a\\u{0}b\\u{1b}[31m") && q.contains("more characters") && q.count < 80)
    }
}
