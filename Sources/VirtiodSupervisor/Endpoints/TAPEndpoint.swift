import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// Endpoint `tap`: a TAP interface for a virtio-net device (virtio 1.2 §5.1),
/// with 12-byte virtio-net headers, the device's MAC address and MTU, and one
/// TAP queue per virtqueue pair (IFF_MULTI_QUEUE, at most `maxQueuePairs`).
/// The name is the rule's `InterfaceName=` or vtnet%d. Held here, the
/// interface keeps its addresses and routes across plugin restarts.
final class TAPEndpoint: Endpoint {
    static let kind = "tap"
    /// Most queue pairs virtiod uses per NIC.
    static let maxQueuePairs = 8

    let queues: [TAPInterface]
    private let mac: [UInt8]?

    private init(queues: [TAPInterface], mac: [UInt8]?) {
        self.queues = queues
        self.mac = mac
    }

    // virtio-net config fields this endpoint reads (§5.1.4 struct virtio_net_config).
    private static let macFeature = NetFeatures.mac.rawValue
    private static let mtuFeature = NetFeatures.mtu.rawValue
    private static let multiqueueFeature = NetFeatures.multiqueue.rawValue

    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64) -> Int {
        guard offered & multiqueueFeature != 0, transport.configSize >= 10,
              let n = try? transport.readConfig(UInt16.self, at: 8) else { return 1 }
        return max(1, min(maxQueuePairs, Int(n)))
    }

    private static func deviceMAC(_ transport: VirtioPCITransport, offered: UInt64) -> [UInt8]? {
        guard offered & macFeature != 0, transport.configSize >= 6 else { return nil }
        return try? transport.readConfig(offset: 0, length: 6)
    }

    static func create(for device: ClaimedDevice, rule: DeviceRule?) throws -> TAPEndpoint {
        let transport = device.transport, offered = device.offeredFeatures
        let pairs = plannedQueues(transport, offered: offered)
        let first = try TAPInterface.open(name: rule?.interfaceName ?? "vtnet%d", multiQueue: pairs > 1, exclusive: true)
        var all = [first]
        do {
            for _ in 1..<pairs { all.append(try TAPInterface.open(name: first.name, multiQueue: true)) }
            // VERSION_1 devices always use the 12-byte header (§5.1.6).
            for q in all { try q.setVnetHeaderSize(12) }
            let mac = deviceMAC(transport, offered: offered)
            if let mac { try first.setMACAddress(mac) }
            if offered & mtuFeature != 0, transport.configSize >= 12 {
                // Device-written: only an MTU an Ethernet interface can have is used.
                let mtu = Int(try transport.readConfig(UInt16.self, at: 10))
                if (68...65535).contains(mtu) {
                    try first.setMTU(mtu)
                } else {
                    Log.warning("device reports MTU \(mtu); keeping the TAP's default", device: device.address)
                }
            }
            Log.info("TAP interface \(first.name) with \(all.count) queue(s)", device: device.address)
            return TAPEndpoint(queues: all, mac: mac)
        } catch {
            for q in all { try? q.fd.close() }
            throw error
        }
    }

    static func restore(for device: ClaimedDevice, fds: [FileDescriptor], state: FileDescriptor?) throws -> TAPEndpoint {
        guard let first = fds.first else { throw ClaimError.setup("no TAP fd in the fd store") }
        let name = try TAPInterface.name(of: first)
        return TAPEndpoint(queues: fds.map { TAPInterface(fd: $0, name: name) },
                           mac: deviceMAC(device.transport, offered: device.offeredFeatures))
    }

    var fds: [FileDescriptor] { queues.map(\.fd) }
    var interface: String { queues[0].name }
    var facts: [String: String] { ["interface": interface, "queues": String(queues.count)] }
    var summary: String { interface }
    var name: String? { interface }

    /// udev's link policy (MACAddressPolicy=) may have replaced the device's
    /// MAC set right after creation: put it back.
    func interfaceAppeared(_ interface: String) {
        guard interface == self.interface, let mac else { return }
        do { try queues[0].setMACAddress(mac) } catch { Log.warning("TAP \(interface): \(error)") }
    }

    func close() {
        for q in queues { try? q.fd.close() }
    }
}
