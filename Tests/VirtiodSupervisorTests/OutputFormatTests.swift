import Foundation
import Testing
import VirtioCore
import VirtiodProtocol
@testable import VirtiodSupervisor

/// What commands print for machines: one JSON key style everywhere
/// (`virtiod discover --json`, every `virtioctl … --json`, the control
/// socket) and Prometheus text that follows the exposition format.
@Suite struct OutputFormatTests {
    /// A device with every optional part filled in, so every key appears.
    static func fullDevice() -> DeviceReport {
        var plugin = PluginProcessReport(name: "block", executable: "/usr/libexec/virtiod/virtiod-block", pid: 42, state: .running,
                                         startedAt: 1_700_000_000.5, uptimeSeconds: 12, restarts: 1, lastExit: "signal 9",
                                         reloads: 3, lastReloadPauseMS: 162.5)
        plugin.unit = "virtiod-block-0000_00_05.0-1.service"
        plugin.lastReload = "reloaded"
        plugin.version = "0.5.0"
        let queue = DriverReport.Queue(index: 0, name: "requestq0", size: 256, maxSize: 1024, layout: "split", msixVector: 1,
                                       interrupts: 9, counters: ["read_bytes": 4096, "reads": 1, "in_flight": 2],
                                       ringOffsets: ["descriptors": 0, "driver": 4096, "device": 8192])
        let driver = DriverReport(stub: false, pluginVersion: "0.5.0", offered: .init(0x1_0000_0046, deviceType: .block),
                                  negotiated: .init(0x1_0000_0046, deviceType: .block), deviceQueues: 1, queues: [queue],
                                  msixVectors: 2, interruptMode: "msix", configVector: 0, configInterrupts: 1,
                                  config: ["capacity_bytes": .number(1 << 26)], status: ["DRIVER_OK"], registerAccess: "mmap",
                                  registerErrors: 0)
        var d = DeviceReport(address: "0000:00:05.0", type: "block", deviceID: "1af4:1042", state: .running,
                             kernelDriver: "vfio-pci", iommuGroup: 5, numaNode: 0, reason: "claimed", rule: "/etc/virtiod/virtiod.conf:3",
                             interfaces: [], plugin: plugin, driver: driver)
        d.endpoints = [EndpointReport(kind: "nbd", summary: "/dev/nbd0", name: "nbd0", details: ["size_bytes": "67108864"])]
        return d
    }

    /// Every object key in a JSON document.
    func keys(_ json: Any) -> [String] {
        if let o = json as? [String: Any] { return o.keys + o.values.flatMap(keys) }
        if let a = json as? [Any] { return a.flatMap(keys) }
        return []
    }

    @Test func everyCommandSharesTheSnakeCaseKeyStyle() throws {
        var plugin = PluginReport(name: "block", executable: "/x", installed: true, stub: false, devices: ["0000:00:05.0"], pids: [42])
        plugin.deviceTypes = ["block"]
        plugin.manifest = "/usr/lib/virtiod/plugins/block.plugin"
        let response = ControlResponse(error: ControlError(.refused, "no"), devices: [Self.fullDevice()], plugins: [plugin], message: "m")
        let function = try #require(VirtioFunction(address: "0000:00:03.0", vendor: "0x1af4", device: "0x1041", subsystemDevice: "0x1100",
                                                   driver: "virtio-pci", iommuGroup: 3, iommuGroupMembers: ["0000:00:03.0"],
                                                   numaNode: "0", interfaces: ["enp0s3"], blockDevices: []))
        // The socket's and --json's encoders, and what `virtiod discover --json` prints.
        let documents: [Data] = [try ControlWire.encoder.encode(response), try ControlWire.prettyEncoder.encode(response),
                                 try ControlWire.prettyEncoder.encode([function])]
        for data in documents {
            let all = keys(try JSONSerialization.jsonObject(with: data))
            #expect(all.count > 12)
            let odd = all.filter { !ControlWire.isSnakeCase($0) }
            #expect(odd.isEmpty, "keys not in snake_case: \(odd)")
        }
        let text = String(decoding: try ControlWire.encoder.encode(response), as: UTF8.self)
        #expect(text.contains(#""last_reload_pause_ms":162.5"#) && text.contains(#""kernel_driver":"vfio-pci""#))
        // And it reads back: the client decodes what the server wrote.
        let back = try ControlWire.decoder.decode(ControlResponse.self, from: ControlWire.encoder.encode(response))
        #expect(back.devices?.first?.plugin?.lastReloadPauseMS == 162.5 && back.devices?.first?.driver?.queues.first?.counters?["read_bytes"] == 4096)
        #expect(!ControlWire.isSnakeCase("kernelDriver") && !ControlWire.isSnakeCase("_x") && ControlWire.isSnakeCase("read_bytes"))
    }

    @Test func metricsFollowTheExpositionFormat() throws {
        var unclaimed = DeviceReport(address: "0000:00:03.0", type: "net", deviceID: "1af4:1041", state: .unclaimed,
                                     kernelDriver: "virtio-pci", iommuGroup: 3, numaNode: nil)
        unclaimed.interfaces = ["enp0s3"]
        let text = MetricsExposition.render(devices: [Self.fullDevice(), unclaimed])
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains(#"virtiod_queue_read_bytes_total{device="0000:00:05.0",queue="requestq0",type="block"} 4096"#))
        #expect(lines.contains(#"virtiod_queue_in_flight{device="0000:00:05.0",queue="requestq0",type="block"} 2"#))
        #expect(lines.contains(#"virtiod_plugin_last_reload_pause_seconds{device="0000:00:05.0",plugin="block",type="block"} 0.1625"#))
        #expect(lines.contains(#"virtiod_plugin_restarts_total{device="0000:00:05.0",plugin="block",type="block"} 1"#))
        #expect(lines.contains(#"virtiod_device_state{device="0000:00:03.0",state="unclaimed",type="net"} 1"#))
        #expect(lines.contains(#"virtiod_device_state{device="0000:00:03.0",state="running",type="net"} 0"#))
        #expect(lines.contains("virtiod_up 1"))
        // Each family once, HELP then TYPE, its samples right after; counters end in _total.
        var seen = Set<String>(), current = ""
        for (i, line) in lines.enumerated() {
            if line.hasPrefix("# HELP ") {
                current = String(line.split(separator: " ")[2])
                #expect(seen.insert(current).inserted, "family \(current) twice")
                let type = lines[i + 1].split(separator: " ")
                #expect(type.count == 4 && type[1] == "TYPE" && String(type[2]) == current)
                #expect((type[3] == "counter") == current.hasSuffix("_total"), "\(current) is a \(type[3])")
            } else if !line.hasPrefix("#") {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                #expect(name == current, "sample \(line) outside its family \(current)")
                #expect(Double(line.split(separator: " ").last!) != nil)
            }
        }
        #expect(seen.count >= 12)
        // Label values are escaped; nothing else to do when virtiod is down.
        var odd = unclaimed
        odd.plugin = PluginProcessReport(name: "a\"b\\c\nd", executable: "", pid: nil, state: .failed, startedAt: nil,
                                         uptimeSeconds: nil, restarts: 0, lastExit: nil)
        #expect(MetricsExposition.render(devices: [odd]).contains(#"plugin="a\"b\\c\nd""#))
        #expect(MetricsExposition.render(devices: [], up: false) == "# HELP virtiod_up 1 when virtioctl reached virtiod, 0 when it is not running.\n# TYPE virtiod_up gauge\nvirtiod_up 0\n")
    }
}
