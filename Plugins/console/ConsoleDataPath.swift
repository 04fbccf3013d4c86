import FoundationEssentials
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime
import VirtiodProtocol

/// virtio-console's data path (virtio 1.2 §5.3.6): every port a terminal
/// (`ConsolePort`), and with VIRTIO_CONSOLE_F_MULTIPORT the control queues
/// (§5.3.6.2): DEVICE_READY, then per port PORT_ADD → PORT_READY,
/// CONSOLE_PORT → PORT_OPEN(1), PORT_NAME, PORT_OPEN both ways, RESIZE,
/// PORT_REMOVE. Terminals come from the supervisor (`pty` endpoint) as
/// ports appear; its `activity` events say when one may have been opened.
final class ConsoleDataPath: DataPath {
    /// Most ports served (ids 0 ..< maxPorts), as the supervisor's pty endpoint.
    static let maxPorts = 64
    static let bufferSize = 4096, buffersPerQueue = 16
    static let controlBufferSize = 4096, controlBuffers = 8, controlTxSize = 64, controlTxBuffers = 16
    static let controlRx = 2, controlTx = 3

    /// Terminals from attach, by port id, until their port appears.
    private var attached: [Int: FileDescriptor]
    private(set) var ports: [Int: ConsolePort] = [:]
    private var multiport = false
    private var ready = false
    private var controlIn: DMABufferPool?, controlOut: DMABufferPool?
    /// Control messages waiting for a free transmit buffer.
    private var outbox: [ConsoleControl] = []
    private var control = ControlCounters()

    struct ControlCounters: Codable {
        var received: UInt64 = 0, sent: UInt64 = 0, errors: UInt64 = 0, refusedPorts: UInt64 = 0
    }

    init(device: AttachedDevice) throws {
        let e = try device.endpoint("pty")
        let keys = (e.facts["ports"] ?? "").split(separator: " ").compactMap { Int($0) }
        guard keys.count == e.fds.count else {
            for f in e.fds { try? f.close() }
            throw PluginError("the pty endpoint names \(keys.count) port(s) and carries \(e.fds.count) terminal(s)")
        }
        attached = Dictionary(zip(keys, e.fds)) { a, b in try? b.close(); return a }
    }

    /// Queue plan: port 0's pair, and with multiport the control pair and
    /// one pair per further port (§5.3.2), as many as the device has, at most `maxPorts`.
    static func plan(negotiated: UInt64, device: AttachedDevice) throws -> [(index: Int, name: String)] {
        var plan = [(0, "receiveq0"), (1, "transmitq0")]
        guard ConsoleFeatures(rawValue: negotiated).contains(.multiport) else { return plan }
        let maxPorts = Int(try device.transport.readConfig(UInt32.self, at: 4))
        let ports = min(maxPorts, Self.maxPorts, device.transport.queueCount / 2 - 1)
        plan += [(controlRx, "control-receiveq"), (controlTx, "control-transmitq")]
        for p in stride(from: 1, to: max(1, ports), by: 1) { plan += [(2 * (p + 1), "receiveq\(p)"), (2 * (p + 1) + 1, "transmitq\(p)")] }
        return plan
    }

    private func position(_ driver: DeviceDriver, index: Int) -> Int? { driver.queues.firstIndex { $0.index == index } }
    private func queueIndices(port id: Int) -> (rx: Int, tx: Int) { id == 0 ? (0, 1) : (2 * (id + 1), 2 * (id + 1) + 1) }

    func start(_ driver: DeviceDriver) throws {
        multiport = ConsoleFeatures(rawValue: driver.negotiated).contains(.multiport)
        if multiport {
            guard let rxp = position(driver, index: Self.controlRx), position(driver, index: Self.controlTx) != nil else {
                throw PluginError("multiport without its control queues")
            }
            controlIn = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.controlBufferSize, count: Self.controlBuffers)
            controlOut = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.controlTxSize, count: Self.controlTxBuffers)
            try postControl(driver, rxp)
            try send(ConsoleControl(id: 0, event: .deviceReady, value: 1), driver)
            ready = true
        } else {
            // One port, the console (§5.3.6: without multiport, port 0 only).
            let port = try addPort(0, driver)
            port.console = true
            port.window = configWindow(driver)
            try requestTerminal(port, driver)
        }
    }

    /// The config's size (VIRTIO_CONSOLE_F_SIZE, §5.3.4) for the console port.
    private func configWindow(_ driver: DeviceDriver) -> ConsolePort.Window? {
        guard ConsoleFeatures(rawValue: driver.negotiated).contains(.size),
              let cols = try? driver.transport.readConfig(UInt16.self, at: 0),
              let rows = try? driver.transport.readConfig(UInt16.self, at: 2) else { return nil }
        return ConsolePort.Window(rows: rows, cols: cols)
    }

    // MARK: ports

    /// Set a port up (or take it up again): buffers, receive queue filled, its terminal.
    @discardableResult
    private func addPort(_ id: Int, _ driver: DeviceDriver) throws -> ConsolePort {
        let (rxIndex, txIndex) = queueIndices(port: id)
        guard id < Self.maxPorts, let rxp = position(driver, index: rxIndex), let txp = position(driver, index: txIndex) else {
            throw PluginError("port \(id) has no queues here (this plugin serves ports 0–\(Self.maxPorts - 1) of the device's)")
        }
        let port: ConsolePort
        if let known = ports[id] {
            port = known
            port.present = true
        } else {
            let rx = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.bufferSize, count: Self.buffersPerQueue)
            let tx = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.bufferSize, count: Self.buffersPerQueue)
            port = ConsolePort(id: id, rxPosition: rxp, txPosition: txp, rx: rx, tx: tx)
            ports[id] = port
        }
        if port.master == nil, let fd = attached.removeValue(forKey: id) {
            port.master = fd
            port.applyWindow()
            port.look()
        }
        try port.postReceive(driver)
        return port
    }

    /// Ask the supervisor for the port's terminal, or tell it the port's new name or role.
    private func requestTerminal(_ port: ConsolePort, _ driver: DeviceDriver) throws {
        var facts = ["console": port.console ? "yes" : "no"]
        if let name = port.name { facts["name"] = name }
        try driver.requestEndpoint(EndpointEvent(kind: "pty", action: .open, key: port.id, facts: facts))
    }

    func endpointEvent(_ event: EndpointEvent, fd: FileDescriptor?, _ driver: DeviceDriver) throws {
        guard event.kind == "pty", let port = ports[event.key], port.present else {
            try? fd?.close()
            return
        }
        switch event.action {
        case .opened:
            port.tty = event.facts["tty"]
            port.links = event.facts["links"]
            if let fd {
                if port.master == nil {
                    port.master = fd
                    port.applyWindow()
                } else {
                    try? fd.close()
                }
            }
            try settle(port, driver)
        case .activity:
            try settle(port, driver)
        case .failed:
            try? fd?.close()
            PluginLog.warning("console port \(port.id): no terminal: \(event.facts["error"] ?? "?")")
        default:
            try? fd?.close()
        }
    }

    /// Look at the port's terminal; tell the device if it was opened or
    /// closed (PORT_OPEN, not for a console port, which is always open);
    /// move what waits.
    private func settle(_ port: ConsolePort, _ driver: DeviceDriver) throws {
        port.look()
        if multiport, !port.console, port.present, port.toldOpen != port.terminalOpen {
            try send(ConsoleControl(id: UInt32(port.id), event: .portOpen, value: port.terminalOpen ? 1 : 0), driver)
            port.toldOpen = port.terminalOpen
        }
        try port.flush(driver)
        if port.terminalOpen, port.console || port.hostOpen { try port.pump(driver) }
    }

    // MARK: control queues (§5.3.6.2)

    private func postControl(_ driver: DeviceDriver, _ position: Int) throws {
        guard var pool = controlIn else { return }
        let q = driver.queues[position]
        while let slot = pool.take() {
            let s = pool.slice(slot)
            try q.queue.add([.writable(driver.device.region.deviceAddress(s), s.length)], token: UInt64(slot))
        }
        controlIn = pool
        if q.queue.publish() { driver.transport.notify(q.index) }
    }

    private func send(_ message: ConsoleControl, _ driver: DeviceDriver) throws {
        outbox.append(message)
        try drainOutbox(driver)
    }

    private func drainOutbox(_ driver: DeviceDriver) throws {
        guard var pool = controlOut, let p = position(driver, index: Self.controlTx) else { return }
        let q = driver.queues[p]
        var added = false
        while !outbox.isEmpty, let slot = pool.take() {
            let bytes = outbox.removeFirst().encoded
            let s = pool.slice(slot)
            driver.device.region.copy(bytes, into: s)
            try q.queue.add([.readable(driver.device.region.deviceAddress(s), bytes.count)], token: UInt64(slot))
            control.sent &+= 1
            added = true
        }
        controlOut = pool
        if added, q.queue.publish() { driver.transport.notify(q.index) }
    }

    private func receiveControl(_ driver: DeviceDriver, _ position: Int) throws {
        guard var pool = controlIn else { return }
        var messages: [ConsoleControl] = []
        while let used = try driver.queues[position].queue.popUsed() {
            let slot = Int(used.token)
            do {
                messages.append(try ConsoleControl(parsing: driver.device.region.bytes(pool.slice(slot), count: Int(used.length))))
                control.received &+= 1
            } catch {
                control.errors &+= 1
                PluginLog.warning("console: \(error); ignored")
            }
            pool.give(slot)
        }
        controlIn = pool
        try postControl(driver, position)
        for m in messages { try handle(m, driver) }
    }

    private func handle(_ m: ConsoleControl, _ driver: DeviceDriver) throws {
        let id = Int(m.id)
        switch m.event {
        case .deviceAdd:
            do {
                let port = try addPort(id, driver)
                if port.master == nil { try requestTerminal(port, driver) }
                try send(ConsoleControl(id: m.id, event: .portReady, value: 1), driver)
                // After a device reset the device forgot that the terminal is open.
                port.toldOpen = nil
                try settle(port, driver)
            } catch {
                control.refusedPorts &+= 1
                PluginLog.warning("console: port \(id) refused: \(error)")
                try send(ConsoleControl(id: m.id, event: .portReady, value: 0), driver)
            }
        case .deviceRemove:
            guard let port = ports[id], port.present else { return }
            port.present = false
            port.hostOpen = false
            if !port.pending.isEmpty {
                PluginLog.notice("console port \(id) removed with \(port.pending.count) buffer(s) not yet read; dropped")
                port.counters.dropped &+= UInt64(port.pending.count)
                for p in port.pending { port.rx.give(p.slot) }
                port.pending = []
            }
            try? port.master?.close()
            port.master = nil
            port.terminalOpen = false
            port.toldOpen = nil
            try driver.requestEndpoint(EndpointEvent(kind: "pty", action: .close, key: id))
            PluginLog.info("console port \(id) removed")
        case .consolePort:
            guard let port = ports[id], port.present else { return }
            if !port.console {
                port.console = true
                try requestTerminal(port, driver)
            }
            // The driver's side of a console port is always open (§5.3.6.2).
            try send(ConsoleControl(id: m.id, event: .portOpen, value: 1), driver)
            port.toldOpen = true
            try settle(port, driver)
        case .portName:
            guard let port = ports[id], port.present, let name = m.name, name != port.name else { return }
            port.name = name
            try requestTerminal(port, driver)
        case .portOpen:
            guard let port = ports[id], port.present else { return }
            port.hostOpen = m.value != 0
            PluginLog.info("console port \(id)\(port.name.map { " (\($0))" } ?? ""): host side \(port.hostOpen ? "connected" : "disconnected")")
            try settle(port, driver)
        case .resize:
            guard let port = ports[id], let size = m.size else { return }
            port.window = ConsolePort.Window(rows: size.rows, cols: size.cols)
            port.applyWindow()
        case .deviceReady, .portReady:
            // Driver → device only.
            control.errors &+= 1
        }
    }

    // MARK: the event loop

    var pollFDs: [FileDescriptor] { ports.values.filter(\.wantsInput).compactMap(\.master) }

    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        guard let port = ports.values.first(where: { $0.master == fd }) else { return }
        if port.wantsInput { try port.pump(driver) } else { port.look() }
        if !port.terminalOpen { try settle(port, driver) }
    }

    var writeFDs: [FileDescriptor] { ports.values.filter(\.wantsOutput).compactMap(\.master) }

    /// Terminals open here whose data is not wanted now: only their closing matters.
    var hangupFDs: [FileDescriptor] { ports.values.filter { $0.terminalOpen && !$0.wantsInput }.compactMap(\.master) }

    func writable(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        guard let port = ports.values.first(where: { $0.master == fd }) else { return }
        try port.flush(driver)
        if !port.terminalOpen { try settle(port, driver) }
    }

    func interrupt(queue position: Int, _ driver: DeviceDriver) throws {
        let index = driver.queues[position].index
        if multiport, index == Self.controlRx { return try receiveControl(driver, position) }
        if multiport, index == Self.controlTx {
            guard var pool = controlOut else { return }
            while let used = try driver.queues[position].queue.popUsed() { pool.give(Int(used.token)) }
            controlOut = pool
            return try drainOutbox(driver)
        }
        for port in ports.values {
            if port.rxPosition == position {
                try port.collectReceived(driver)
                if !port.terminalOpen { try settle(port, driver) }
            } else if port.txPosition == position {
                try port.collectTransmitted(driver)
            }
        }
    }

    func configChanged(_ driver: DeviceDriver) {
        guard !multiport || ports[0]?.console == true, let port = ports[0], let w = configWindow(driver), w != port.window else { return }
        port.window = w
        port.applyWindow()
    }

    func counters(queue position: Int) -> [String: UInt64] {
        for port in ports.values {
            if port.rxPosition == position {
                return ["bytes": port.counters.received, "in_waiting_buffers": UInt64(port.pending.count),
                        "dropped": port.counters.dropped, "opens": port.counters.opens, "closes": port.counters.closes]
            }
            if port.txPosition == position { return ["bytes": port.counters.sent] }
        }
        return [:]
    }

    var facts: [String: ConfigValue] {
        var f: [String: ConfigValue] = ["export": .text("pty"), "ports": .number(UInt64(ports.values.filter(\.present).count))]
        for port in ports.values where port.present {
            let p = "port.\(port.id)"
            f[p + ".name"] = .text(port.name ?? "")
            f[p + ".console"] = .text(port.console ? "yes" : "no")
            f[p + ".host"] = .text(port.hostOpen || port.console ? "connected" : "disconnected")
            f[p + ".terminal"] = .text(port.master == nil ? "none yet" : port.terminalOpen ? "open" : "closed")
            f[p + ".tty"] = .text(port.tty ?? "")
            f[p + ".links"] = .text(port.links ?? "")
        }
        return f
    }

    // MARK: hand-over: ports with their buffers, the control queues, what waits.

    struct State: Codable {
        var multiport: Bool
        var controlIn: PoolPlacement?, controlOut: PoolPlacement?
        var outbox: [ConsoleControl]
        var control: ControlCounters
        var ports: [ConsolePort.Record]
    }

    var stateVersion: Int { 1 }
    func quiesce(_ driver: DeviceDriver) throws {}

    func saveState() throws -> Data {
        try JSONEncoder().encode(State(multiport: multiport, controlIn: controlIn.map(PoolPlacement.init),
                                       controlOut: controlOut.map(PoolPlacement.init), outbox: outbox, control: control,
                                       ports: ports.values.sorted { $0.id < $1.id }.map(\.record)))
    }

    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws {
        guard version == 1 else { throw PluginError("console state version \(version) unknown (this plugin reads 1)") }
        let s = try JSONDecoder().decode(State.self, from: state)
        guard s.multiport == ConsoleFeatures(rawValue: driver.negotiated).contains(.multiport) else {
            throw PluginError("the record and the device disagree about multiport")
        }
        if s.multiport {
            guard let i = s.controlIn, let o = s.controlOut, let ip = position(driver, index: Self.controlRx),
                  let op = position(driver, index: Self.controlTx) else { throw PluginError("the record lacks the control queues") }
            controlIn = try driver.restoredPool(i, queue: ip, "control-receiveq")
            controlOut = try driver.restoredPool(o, queue: op, "control-transmitq")
        }
        var restored: [Int: ConsolePort] = [:]
        for r in s.ports {
            // The record is shared memory: an id outside 0..<maxPorts could alias port 0's queues.
            guard (0..<Self.maxPorts).contains(r.id) else { throw PluginError("console port id \(r.id) in the record is out of range") }
            let (rxIndex, txIndex) = queueIndices(port: r.id)
            guard restored[r.id] == nil, let rxp = position(driver, index: rxIndex), let txp = position(driver, index: txIndex) else {
                throw PluginError("console port \(r.id) in the record has no queues here")
            }
            restored[r.id] = try ConsolePort(r, rxPosition: rxp, txPosition: txp, driver)
        }
        multiport = s.multiport
        ready = true
        outbox = s.outbox
        control = s.control
        ports = restored
        for port in ports.values where port.present {
            port.master = attached.removeValue(forKey: port.id)
        }
    }

    /// Whatever the device returned during the pause, every terminal looked
    /// at again; a port whose terminal did not come with attach asks for it.
    func continueAfterHandover(_ driver: DeviceDriver) throws {
        for position in driver.queues.indices { try interrupt(queue: position, driver) }
        try drainOutbox(driver)
        for port in ports.values.sorted(by: { $0.id < $1.id }) where port.present {
            if port.master == nil { try requestTerminal(port, driver) }
            try settle(port, driver)
        }
    }
}
