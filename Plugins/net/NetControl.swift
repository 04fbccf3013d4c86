import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// The control virtqueue's receive filter, MAC and announce commands
/// (virtio 1.2 §5.1.6.5.1 rx mode, §5.1.6.5.2 MAC address, §5.1.6.5.4
/// gratuitous packets), driven by what happens to the TAP interface:
///
/// - promiscuous mode follows the interface (`ip link set vtnet0 promisc on`,
///   or a bridge taking it); otherwise the device filters unicast frames to
///   the interface's MAC and passes all multicast (the TAP does not tell
///   userspace its multicast list, so all-multicast stays on);
/// - a new MAC on the interface (`ip link set vtnet0 address …`) is set on
///   the device;
/// - when the device asks for an announcement (VIRTIO_NET_S_ANNOUNCE, e.g.
///   after a migration), a gratuitous ARP per IPv4 address and an unsolicited
///   neighbour advertisement per IPv6 address go out, then the ack.
///
/// Secondary unicast addresses (macvlan) make the kernel promiscuous without
/// telling userspace: such setups need `promisc on` on the interface.
final class NetControl {
    enum Class: UInt8 { case rx = 0, mac = 1, announce = 3, mq = 4 }
    static let rxPromisc: UInt8 = 0, rxAllMulti: UInt8 = 1, macAddressSet: UInt8 = 1, announceAck: UInt8 = 0
    static let mqPairsSet: UInt8 = 0
    /// VIRTIO_NET_S_ANNOUNCE in the config's status field (§5.1.4).
    static let statusAnnounce: UInt64 = 2

    let interface: String
    let monitor: LinkMonitor?
    /// What the device was last told (nil: not yet).
    private var promiscuous: Bool?
    private var allMulticast = false
    private var mac: [UInt8]?
    private(set) var announcements: UInt64 = 0
    private(set) var failures: UInt64 = 0

    init(interface: String) {
        self.interface = interface
        do { monitor = try LinkMonitor(interface: interface) } catch {
            PluginLog.warning("net: cannot watch \(interface) (\(error)); its promiscuous mode and MAC are not mirrored")
            monitor = nil
        }
    }

    /// One command on the control queue; true when the device acked it.
    @discardableResult
    func command(_ driver: DeviceDriver, _ position: Int, _ c: Class, _ command: UInt8, _ data: [UInt8] = []) -> Bool {
        do {
            let ack = try driver.request(queue: position, readable: [c.rawValue, command] + data, writable: 1)
            if ack.first == 0 { return true }
            PluginLog.warning("net \(driver.device.info.address): device refused control command \(c) \(command) (ack \(ack.first.map(String.init) ?? "none"))")
        } catch {
            PluginLog.warning("net \(driver.device.info.address): control command \(c) \(command): \(error)")
        }
        failures &+= 1
        return false
    }

    /// What the device was told, carried in the hand-over record so that a
    /// successor re-sends nothing that is still true (each command is a
    /// round trip to the device inside the reload's pause).
    struct Told: Codable, Equatable {
        var promiscuous: Bool?
        var allMulticast: Bool
        var mac: [UInt8]?
    }

    var told: Told {
        get { Told(promiscuous: promiscuous, allMulticast: allMulticast, mac: mac) }
        set {
            promiscuous = newValue.promiscuous
            allMulticast = newValue.allMulticast
            // A MAC is 6 bytes; anything else in a record is forgotten (re-sent).
            mac = newValue.mac.flatMap { $0.count == 6 ? $0 : nil }
        }
    }

    /// Forget what the device was told (a process that cannot know it, e.g.
    /// after a roll-back, re-sends it).
    func forget() { told = Told(promiscuous: nil, allMulticast: false, mac: nil) }

    /// Bring the device's filter and MAC in line with the interface.
    func sync(_ driver: DeviceDriver, _ position: Int, _ negotiated: NetFeatures) {
        // sysfs flags are the kernel's own (they include promiscuity a bridge asked for).
        guard let state = LinkMonitor.current(interface) else { return }
        if negotiated.contains(.controlRx) {
            if !allMulticast { allMulticast = command(driver, position, .rx, Self.rxAllMulti, [1]) }
            if promiscuous != state.promiscuous, command(driver, position, .rx, Self.rxPromisc, [state.promiscuous ? 1 : 0]) {
                promiscuous = state.promiscuous
                PluginLog.info("net \(driver.device.info.address): receive filter "
                    + (state.promiscuous ? "off (\(interface) is promiscuous)" : "on: unicast to the interface's MAC, all multicast"))
            }
        }
        if negotiated.contains(.controlMACAddress), let m = state.mac, m != mac,
           command(driver, position, .mac, Self.macAddressSet, m) {
            mac = m
        }
    }

    /// The device asked for an announcement: send it, then ack.
    func announce(_ driver: DeviceDriver, _ position: Int, send: ([[UInt8]]) -> Int) {
        guard let mac = LinkMonitor.current(interface)?.mac else { return }
        var frames: [[UInt8]] = []
        if let monitor, let addresses = try? monitor.addresses() {
            frames += addresses.v4.map { NetAnnouncement.gratuitousARP(mac: mac, ipv4: $0) }
            frames += addresses.v6.map { NetAnnouncement.unsolicitedNA(mac: mac, ipv6: $0) }
        }
        let sent = send(frames)
        command(driver, position, .announce, Self.announceAck)
        announcements &+= 1
        PluginLog.info("net \(driver.device.info.address): announced \(interface): \(sent) of \(frames.count) frame(s)")
    }

    var filterDescription: String {
        switch promiscuous {
        case nil: "device default (promiscuous)"
        case true?: "promiscuous"
        case false?: "unicast to own MAC, all multicast"
        }
    }
}
