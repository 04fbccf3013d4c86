import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// One port of a console device (virtio 1.2 §5.3.6) as the plugin drives
/// it: its receive and transmit queues, its terminal (a pty master the
/// supervisor made, `pty` endpoint) and the bytes between them.
///
/// Flow control both ways without a busy loop: what the device sent is
/// written to the terminal as it takes it, and a buffer goes back to the
/// device only once all of it is written (a slow reader stops the device);
/// the terminal is read only into free transmit buffers (a slow host stops
/// the writer, whose terminal fills up).
final class ConsolePort {
    let id: Int
    /// Positions of the port's queues in `DeviceDriver.queues`.
    let rxPosition: Int, txPosition: Int
    var name: String?
    var console = false
    /// Announced by the device (PORT_ADD, or the single port of a console
    /// without multiport) and not removed.
    var present = true
    /// The host side is connected (the device's PORT_OPEN).
    var hostOpen = false
    /// Somebody here has the terminal open (the master's last look).
    var terminalOpen = false
    /// What the device was last told with PORT_OPEN (nil: nothing yet).
    var toldOpen: Bool?
    var master: FileDescriptor?
    /// /dev/pts/N and the names under /run/virtiod/ports (the supervisor's answer).
    var tty: String?, links: String?
    /// The size to give the terminal (RESIZE, or the config's cols/rows).
    var window: Window?
    var rx: DMABufferPool, tx: DMABufferPool
    /// What the device sent that the terminal has not taken yet, in order.
    var pending: [Pending] = []
    var counters = Counters()

    struct Window: Codable, Equatable { var rows: UInt16, cols: UInt16 }
    struct Pending: Codable, Equatable { var slot: Int, written: Int, length: Int }
    struct Counters: Codable {
        /// Bytes device → terminal and terminal → device.
        var received: UInt64 = 0, sent: UInt64 = 0
        /// Buffers the device returned that could not be used (over-long, or for a removed port).
        var dropped: UInt64 = 0
        var opens: UInt64 = 0, closes: UInt64 = 0
    }

    init(id: Int, rxPosition: Int, txPosition: Int, rx: DMABufferPool, tx: DMABufferPool) {
        self.id = id
        self.rxPosition = rxPosition
        self.txPosition = txPosition
        self.rx = rx
        self.tx = tx
    }

    // MARK: device → terminal

    /// Every free receive buffer to the device.
    func postReceive(_ driver: DeviceDriver) throws {
        let q = driver.queues[rxPosition]
        var added = false
        while let slot = rx.take() {
            let s = rx.slice(slot)
            try q.queue.add([.writable(driver.device.region.deviceAddress(s), s.length)], token: UInt64(slot))
            added = true
        }
        if added, q.queue.publish() { driver.transport.notify(q.index) }
    }

    /// What the device returned on the receive queue, passed on as far as the terminal takes it.
    func collectReceived(_ driver: DeviceDriver) throws {
        let q = driver.queues[rxPosition].queue
        while let used = try q.popUsed() {
            let slot = Int(used.token)
            if used.lengthExceeded || !present || used.length == 0 {
                if used.lengthExceeded || !present { counters.dropped &+= 1 }
                rx.give(slot)
                continue
            }
            pending.append(Pending(slot: slot, written: 0, length: Int(used.length)))
        }
        try flush(driver)
    }

    var wantsOutput: Bool { master != nil && terminalOpen && !pending.isEmpty }

    /// Write pending data to the terminal; buffers written out go back to the device.
    func flush(_ driver: DeviceDriver) throws {
        guard let master, terminalOpen else {
            try postReceive(driver)
            return
        }
        let region = driver.device.region
        while let p = pending.first {
            let s = rx.slice(p.slot)
            let rest = DMASlice(offset: s.offset + p.written, length: p.length - p.written)
            switch try DMAFileIO.write(master, from: region, rest) {
            case .moved(let n):
                counters.received &+= UInt64(n)
                if p.written + n == p.length {
                    pending.removeFirst()
                    rx.give(p.slot)
                } else {
                    pending[0].written += n
                }
            case .wouldBlock:
                try postReceive(driver)
                return
            case .closed:
                terminalOpen = false
                try postReceive(driver)
                return
            }
        }
        try postReceive(driver)
    }

    // MARK: terminal → device

    /// Read the terminal only while the other end can take it: the host side
    /// is connected (a console port always is) and a buffer is free.
    var wantsInput: Bool { master != nil && present && terminalOpen && (console || hostOpen) && tx.freeCount > 0 }

    /// Read what the terminal has into free transmit buffers and send them.
    func pump(_ driver: DeviceDriver) throws {
        guard let master else { return }
        let q = driver.queues[txPosition]
        let region = driver.device.region
        var added = false
        defer { if added, q.queue.publish() { driver.transport.notify(q.index) } }
        while let slot = tx.take() {
            let s = tx.slice(slot)
            switch try DMAFileIO.read(master, into: region, s) {
            case .moved(let n):
                try q.queue.add([.readable(region.deviceAddress(s), n)], token: UInt64(slot))
                counters.sent &+= UInt64(n)
                added = true
            case .wouldBlock:
                tx.give(slot)
                return
            case .closed:
                tx.give(slot)
                terminalOpen = false
                return
            }
        }
    }

    /// Transmit buffers the device is done with.
    func collectTransmitted(_ driver: DeviceDriver) throws {
        while let used = try driver.queues[txPosition].queue.popUsed() { tx.give(Int(used.token)) }
    }

    // MARK: the terminal

    /// Look at the master: is the terminal open here? True if that changed.
    @discardableResult
    func look() -> Bool {
        guard let master else { return false }
        let open = PseudoTerminal.hasReader(master)
        guard open != terminalOpen else { return false }
        terminalOpen = open
        if open { counters.opens &+= 1 } else { counters.closes &+= 1 }
        return true
    }

    func applyWindow() {
        guard let master, let window else { return }
        do { try PseudoTerminal.setWindow(master, rows: window.rows, cols: window.cols) } catch {
            PluginLog.warning("console port \(id): \(error)")
        }
    }

    // MARK: hand-over

    struct Record: Codable {
        var id: Int
        var name: String?
        var console: Bool, present: Bool, hostOpen: Bool, terminalOpen: Bool, toldOpen: Bool?
        var tty: String?, links: String?
        var window: Window?
        var rx: PoolPlacement, tx: PoolPlacement
        var pending: [Pending]
        var counters: Counters
    }

    var record: Record {
        Record(id: id, name: name, console: console, present: present, hostOpen: hostOpen, terminalOpen: terminalOpen,
               toldOpen: toldOpen, tty: tty, links: links, window: window, rx: PoolPlacement(rx), tx: PoolPlacement(tx),
               pending: pending, counters: counters)
    }

    /// A port from a predecessor's record (its pools checked against the queues).
    convenience init(_ r: Record, rxPosition: Int, txPosition: Int, _ driver: DeviceDriver) throws {
        for p in r.pending {
            guard p.length > 0, p.length <= r.rx.bufferSize, p.written >= 0, p.written < p.length else {
                throw PluginError("console port \(r.id): a pending buffer in the record does not fit (\(p))")
            }
        }
        let rx = try driver.restoredPool(r.rx, queue: rxPosition, "receiveq of port \(r.id)", held: r.pending.map(\.slot))
        let tx = try driver.restoredPool(r.tx, queue: txPosition, "transmitq of port \(r.id)")
        self.init(id: r.id, rxPosition: rxPosition, txPosition: txPosition, rx: rx, tx: tx)
        name = r.name
        console = r.console
        present = r.present
        hostOpen = r.hostOpen
        terminalOpen = r.terminalOpen
        toldOpen = r.toldOpen
        tty = r.tty
        links = r.links
        window = r.window
        pending = r.pending
        counters = r.counters
    }
}
