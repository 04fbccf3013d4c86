import Foundation
import Testing
import VirtiodSupervisor

@Suite struct VirtioFunctionTests {
    @Test func modernFunctionFromSysfsStrings() throws {
        let f = try #require(VirtioFunction(address: "0000:00:03.0", vendor: "0x1af4", device: "0x1041", subsystemDevice: "0x1100",
                                            driver: "virtio-pci", iommuGroup: 7, iommuGroupMembers: ["0000:00:03.0"],
                                            numaNode: "-1", interfaces: ["eth0"]))
        #expect(f.type == "net" && f.typeID == 1 && !f.transitional)
        #expect(f.owner == .kernel && f.iommuGroupPeers.isEmpty && f.numaNode == nil && f.interfaces == ["eth0"])
    }

    @Test func transitionalAndOwners() throws {
        let t = try #require(VirtioFunction(address: "a", vendor: "0x1af4", device: "0x1001", subsystemDevice: "0x0002",
                                            driver: "vfio-pci", iommuGroup: 3, iommuGroupMembers: ["a", "b"], numaNode: "0"))
        #expect(t.type == "block" && t.transitional && t.owner == .vfio && t.iommuGroupPeers == ["b"] && t.numaNode == 0)
        let none = try #require(VirtioFunction(address: "c", vendor: "0x1af4", device: "0x1053", subsystemDevice: nil,
                                               driver: nil, iommuGroup: nil, iommuGroupMembers: [], numaNode: nil))
        #expect(none.owner == .none && none.type == "vsock" && none.typeID == 19)
    }

    @Test func nonVirtioFunctionsAreNotVirtio() {
        #expect(VirtioFunction(address: "x", vendor: "0x8086", device: "0x1041", subsystemDevice: nil, driver: nil,
                               iommuGroup: nil, iommuGroupMembers: [], numaNode: nil) == nil)
        #expect(VirtioFunction(address: "x", vendor: "0x1af4", device: "0x1110", subsystemDevice: nil, driver: nil,
                               iommuGroup: nil, iommuGroupMembers: [], numaNode: nil) == nil) // ivshmem, not virtio
        #expect(VirtioFunction(address: "x", vendor: "garbage", device: "0x1041", subsystemDevice: nil, driver: nil,
                               iommuGroup: nil, iommuGroupMembers: [], numaNode: nil) == nil)
    }
}

/// Read-only discovery of the machine running the tests (on the development
/// and CI machines: their own virtio disk, NIC, balloon… which must never be
/// claimed). Cross-checked against a plain sysfs scan; nothing may change.
@Suite struct HostDiscoveryTests {
    func sysfsScan() -> [String: String?] {
        let fm = FileManager.default
        var out: [String: String?] = [:]
        for a in (try? fm.contentsOfDirectory(atPath: "/sys/bus/pci/devices")) ?? [] {
            let d = "/sys/bus/pci/devices/\(a)"
            guard let v = try? String(contentsOfFile: d + "/vendor", encoding: .utf8), v.hasPrefix("0x1af4"),
                  let id = (try? String(contentsOfFile: d + "/device", encoding: .utf8)).flatMap({ UInt16($0.dropFirst(2).prefix(4), radix: 16) }),
                  (0x1000...0x107f).contains(id) else { continue }
            out[a] = (try? fm.destinationOfSymbolicLink(atPath: d + "/driver")).map { String($0.split(separator: "/").last!) }
        }
        return out
    }

    @Test func discoveryMatchesSysfsAndChangesNothing() throws {
        let before = sysfsScan()
        let found = try Discovery.virtioFunctions()
        let after = sysfsScan()
        #expect(before == after, "discovery changed driver bindings")
        #expect(Set(found.map(\.address)) == Set(before.keys))
        for f in found {
            #expect(f.driver == before[f.address]!, "\(f.address): \(String(describing: f.driver))")
            if f.driver == "virtio-pci" { #expect(f.owner == .kernel) }
            #expect(f.type != nil || f.typeID != nil)
        }
    }
}
