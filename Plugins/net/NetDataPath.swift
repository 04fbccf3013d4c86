import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// virtio-net's data path between the device's queue pairs and a TAP
/// interface, one TAP queue per pair (virtio 1.2 §5.1.6, §5.1.6.5.5 for
/// multiqueue). Frames are never copied in this process: a TAP read lands in
/// a transmit buffer in DMA memory, and received buffers are gathered
/// straight from DMA memory into `writev` on the TAP. The TAP's vnet header
/// is the device's `struct virtio_net_hdr`, so checksum and GSO metadata
/// pass through both ways; TAP offloads mirror what the device accepts.
final class NetDataPath: DataPath {
    /// Receive buffers: a page each; larger packets arrive in several
    /// (VIRTIO_NET_F_MRG_RXBUF, §5.1.6.3.2).
    static let receiveBufferSize = 4096
    /// Transmit buffers take a whole TSO frame: 64 KiB + header.
    static let transmitBufferSize = 65536 + 64
    static let transmitBuffersPerPair = 96
    static let batch = 64

    let taps: [TAPInterface]
    private var negotiated = NetFeatures()
    private var pairs: [QueuePair] = []
    /// Position of the control queue in `DeviceDriver.queues`, if set up.
    private var controlPosition: Int?
    /// Receive filter, MAC and announcements over the control queue.
    let control: NetControl
    /// Most buffers one received packet may span (num_buffers is checked against it).
    static let maxBuffersPerPacket = 64

    struct Counters: Codable {
        var packets: UInt64 = 0, bytes: UInt64 = 0, drops: UInt64 = 0, errors: UInt64 = 0, kicks: UInt64 = 0
        var malformed: UInt64 = 0
        var dictionary: [String: UInt64] {
            ["packets": packets, "bytes": bytes, "drops": drops, "errors": errors, "kicks": kicks, "malformed": malformed]
        }
    }

    /// One receive/transmit queue pair and the TAP queue it serves.
    final class QueuePair {
        let tap: TAPInterface
        /// Positions in `DeviceDriver.queues`.
        let rxPosition: Int, txPosition: Int
        var rxPoolState: DMABufferPool
        var txPoolState: DMABufferPool
        var rx = Counters(), tx = Counters()
        /// Transmit is paused (TAP not polled) while no transmit buffer is free.
        var txBlocked = false
        /// A mergeable packet whose later buffers have not been returned yet.
        var partial: [(slot: Int, length: Int)] = []
        var partialNeeded = 0

        init(tap: TAPInterface, rxPosition: Int, txPosition: Int, rxPool: DMABufferPool, txPool: DMABufferPool) {
            self.tap = tap
            self.rxPosition = rxPosition
            self.txPosition = txPosition
            rxPoolState = rxPool
            txPoolState = txPool
        }
    }

    init(device: AttachedDevice) throws {
        taps = try Self.taps(device)
        control = NetControl(interface: taps[0].name)
    }

    /// The TAP queues of the `tap` endpoint (the supervisor made the interface and keeps it).
    static func taps(_ device: AttachedDevice) throws -> [TAPInterface] {
        let e = try device.endpoint("tap")
        guard let name = e.facts["interface"], !e.fds.isEmpty else {
            throw PluginError("the tap endpoint came without an interface name or fds")
        }
        return e.fds.map { TAPInterface(fd: $0, name: name) }
    }

    /// rx0, tx0, rx1, tx1, … for as many pairs as both the device and the TAP
    /// have, then the control queue (index 2 × max_virtqueue_pairs with MQ, §5.1.2).
    static func plan(negotiated: UInt64, device: AttachedDevice) throws -> [(index: Int, name: String)] {
        let f = NetFeatures(rawValue: negotiated)
        var maxPairs = 1
        if f.contains(.multiqueue) {
            maxPairs = max(1, Int(try device.transport.readConfig(UInt16.self, at: 8)))
        }
        let pairs = min(maxPairs, max(1, try taps(device).count))
        var plan: [(index: Int, name: String)] = []
        for i in 0..<pairs { plan += [(2 * i, "receiveq\(i)"), (2 * i + 1, "transmitq\(i)")] }
        if f.contains(.controlVirtqueue) { plan.append((2 * maxPairs, "controlq")) }
        return plan
    }

    var pollFDs: [FileDescriptor] {
        pairs.filter { !$0.txBlocked }.map(\.tap.fd) + (control.monitor.map { [$0.fd] } ?? [])
    }

    var facts: [String: ConfigValue] {
        ["interface": .text(taps[0].name), "queue_pairs": .number(UInt64(pairs.count)),
         "tap_offloads": .text(Self.offloadNames(TAPOffloads.flags(negotiated))),
         "rx_filter": .text(control.filterDescription), "announcements": .number(control.announcements)]
    }

    static func offloadNames(_ f: UInt32) -> String {
        let names = [(0x01, "csum"), (0x02, "tso4"), (0x04, "tso6"), (0x08, "tso-ecn")].filter { f & UInt32($0.0) != 0 }.map(\.1)
        return names.isEmpty ? "none" : names.joined(separator: " ")
    }

    func counters(queue position: Int) -> [String: UInt64] {
        for p in pairs {
            if p.rxPosition == position { return p.rx.dictionary }
            if p.txPosition == position { return p.tx.dictionary }
        }
        return [:]
    }

    func start(_ driver: DeviceDriver) throws {
        negotiated = NetFeatures(rawValue: driver.negotiated)
        let count = driver.queues.filter { $0.name.hasPrefix("receiveq") }.count
        guard count >= 1 else { throw PluginError("device has no receive/transmit queue pair") }
        // Without mergeable buffers every buffer must hold a whole packet
        // (§5.1.6.3.1); guest GSO is only negotiated with mergeable buffers.
        let rxSize = negotiated.contains(.mergeableRxBuffers) ? Self.receiveBufferSize : 2048
        for i in 0..<count {
            let rx = driver.queues[2 * i].queue, tx = driver.queues[2 * i + 1].queue
            let rxPool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: rxSize, count: rx.size)
            let txPool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.transmitBufferSize,
                                           count: min(tx.size, Self.transmitBuffersPerPair))
            pairs.append(QueuePair(tap: taps[i], rxPosition: 2 * i, txPosition: 2 * i + 1, rxPool: rxPool, txPool: txPool))
        }
        controlPosition = driver.queues.firstIndex { $0.name == "controlq" }
        try taps[0].setOffload(TAPOffloads.flags(negotiated))
        // Multiqueue: the device starts with one pair until told (VIRTIO_NET_CTRL_MQ, §5.1.6.5.5).
        if negotiated.contains(.multiqueue), let controlPosition {
            let n = UInt16(pairs.count)
            guard control.command(driver, controlPosition, .mq, NetControl.mqPairsSet, [UInt8(n & 0xff), UInt8(n >> 8)]) else {
                throw PluginError("device refused \(n) queue pairs")
            }
        }
        if let controlPosition { control.sync(driver, controlPosition, negotiated) }
        for p in pairs {
            // Transmit completions are collected on the next TAP read;
            // interrupts for them only while transmit is blocked.
            driver.queues[p.txPosition].queue.disableInterrupts()
            try refillReceive(p, driver)
        }
        configChanged(driver)
    }

    /// Post every free receive buffer; kick if the device wants it.
    private func refillReceive(_ p: QueuePair, _ driver: DeviceDriver) throws {
        let q = driver.queues[p.rxPosition]
        let region = driver.device.region
        var added = false
        while q.queue.freeDescriptors > 0, let slot = p.rxPoolState.take() {
            let s = p.rxPoolState.slice(slot)
            do {
                try q.queue.add([.writable(region.deviceAddress(s), s.length)], token: UInt64(slot))
            } catch {
                p.rxPoolState.give(slot)
                throw PluginError("\(q.name): \(error)")
            }
            added = true
        }
        if added { publish(p.rxPosition, &p.rx, driver) }
    }

    /// Make what was added to queue `position` visible; kick the device if
    /// it asks to be notified (counted).
    private func publish(_ position: Int, _ counters: inout Counters, _ driver: DeviceDriver) {
        let q = driver.queues[position]
        if q.queue.publish() {
            driver.transport.notify(q.index)
            counters.kicks &+= 1
        }
    }

    /// Hand transmit buffer `slot` (vnet header + frame, `length` bytes in
    /// all) to the device; visible after `publish`.
    private func queueTransmit(_ p: QueuePair, slot: Int, length: Int, _ driver: DeviceDriver) throws {
        let region = driver.device.region
        let s = p.txPoolState.slice(slot)
        // num_buffers is the device's field on receive; zero it on transmit (§5.1.6.2).
        region.storeLE16(0, s, at: NetHeader.numBuffersOffset)
        try driver.queues[p.txPosition].queue.add([.readable(region.deviceAddress(s), length)], token: UInt64(slot))
        p.tx.packets &+= 1
        p.tx.bytes &+= UInt64(length - NetHeader.size)
    }

    /// While no transmit buffer or descriptor is free, stop reading this TAP
    /// queue until the device returns some: ask for an interrupt (and check
    /// once more: they may be back already).
    private func blockTransmitIfFull(_ p: QueuePair, _ driver: DeviceDriver) throws {
        let tx = driver.queues[p.txPosition].queue
        guard p.txPoolState.freeCount == 0 || tx.freeDescriptors == 0 else { return }
        p.txBlocked = true
        if tx.enableInterrupts() { try reclaimTransmit(p, driver) }
    }

    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        if let monitor = control.monitor, fd == monitor.fd {
            if monitor.events(), let controlPosition { control.sync(driver, controlPosition, negotiated) }
            return
        }
        guard let p = pairs.first(where: { $0.tap.fd == fd }) else { return }
        try reclaimTransmit(p, driver)
        let q = driver.queues[p.txPosition]
        let region = driver.device.region
        var added = 0
        // A batch per wake-up, then publish once (one kick at most for the batch).
        while added < Self.batch, q.queue.freeDescriptors > 0, let slot = p.txPoolState.take() {
            let s = p.txPoolState.slice(slot)
            let n = p.tap.readFrame(into: region, s)
            if n < 0 {
                p.txPoolState.give(slot)
                if errno != EAGAIN && errno != EINTR { p.tx.errors &+= 1 }
                break
            }
            guard n > NetHeader.size else {
                p.txPoolState.give(slot)
                p.tx.drops &+= 1
                continue
            }
            try queueTransmit(p, slot: slot, length: n, driver)
            added += 1
        }
        if added > 0 { publish(p.txPosition, &p.tx, driver) }
        try blockTransmitIfFull(p, driver)
    }

    private func reclaimTransmit(_ p: QueuePair, _ driver: DeviceDriver) throws {
        let tx = driver.queues[p.txPosition].queue
        var reclaimed = false
        while let used = try tx.popUsed() {
            p.txPoolState.give(Int(used.token))
            reclaimed = true
        }
        if p.txBlocked, reclaimed {
            p.txBlocked = false
            tx.disableInterrupts()
        }
    }

    func interrupt(queue position: Int, _ driver: DeviceDriver) throws {
        for p in pairs {
            if p.rxPosition == position { try receive(p, driver) }
            if p.txPosition == position { try reclaimTransmit(p, driver) }
        }
    }

    /// Hand every received packet to the TAP, then give the buffers back.
    private func receive(_ p: QueuePair, _ driver: DeviceDriver) throws {
        let rx = driver.queues[p.rxPosition].queue
        let mergeable = negotiated.contains(.mergeableRxBuffers)
        var delivered = false
        repeat {
            while let used = try rx.popUsed() {
                // The queue core checked used.length <= the buffer's size, or flagged it.
                let piece = (slot: Int(used.token), length: Int(used.length))
                if used.lengthExceeded {
                    // The device claims more than the buffer holds: drop the
                    // packet this buffer belongs to, count it, go on.
                    p.rx.malformed &+= 1
                    p.rx.drops &+= 1
                    p.rxPoolState.give(piece.slot)
                    dropPartial(p)
                    continue
                }
                if p.partialNeeded == 0 {
                    // num_buffers is device-written: only a count the ring can hold is believed.
                    let s = p.rxPoolState.slice(piece.slot)
                    let count = mergeable ? Int(driver.device.region.loadLE16(s, at: NetHeader.numBuffersOffset)) : 1
                    guard piece.length >= NetHeader.size, count >= 1, count <= min(rx.size, Self.maxBuffersPerPacket) else {
                        p.rx.malformed &+= 1
                        p.rx.drops &+= 1
                        p.rxPoolState.give(piece.slot)
                        continue
                    }
                    p.partialNeeded = count
                }
                p.partial.append(piece)
                if p.partial.count == p.partialNeeded {
                    deliver(p, driver)
                    delivered = true
                }
            }
            try refillReceive(p, driver)
        } while rx.enableInterrupts()
        // A TAP write runs the kernel's receive path to the end: replies (a
        // ping's, a TCP ACK) are often queued on the TAP already. Sending
        // them now saves a trip through poll() on the latency path.
        if delivered, !p.txBlocked { try ready(p.tap.fd, driver) }
    }

    private func dropPartial(_ p: QueuePair) {
        for x in p.partial { p.rxPoolState.give(x.slot) }
        p.partial.removeAll(keepingCapacity: true)
        p.partialNeeded = 0
    }

    /// Write one complete packet (header + frame, maybe in several buffers) to the TAP.
    private func deliver(_ p: QueuePair, _ driver: DeviceDriver) {
        let region = driver.device.region
        defer { dropPartial(p) }
        let total = p.partial.reduce(0) { $0 + $1.length }
        let slices = p.partial.map { p.rxPoolState.slice($0.slot) }
        guard total > NetHeader.size,
              NetHeader.isAcceptable(in: region, slices[0], frameLength: total - NetHeader.size, negotiated: negotiated) else {
            p.rx.malformed &+= 1
            p.rx.drops &+= 1
            return
        }
        let n = p.tap.writeFrame(from: region, slices, lengths: p.partial.map(\.length))
        if n == total {
            p.rx.packets &+= 1
            p.rx.bytes &+= UInt64(total - NetHeader.size)
        } else {
            // The kernel refused the frame (interface down, bad GSO): count it, go on.
            p.rx.errors &+= 1
        }
    }

    // MARK: hand-over

    /// Version 1: per pair, where its buffer pools lie and its counters.
    /// Which buffers the device holds is in the queue states (token = slot).
    /// 2: pools as `PoolPlacement`s (1 had them as flat fields).
    /// 3: what the control queue told the device (2 is still read: the
    /// successor then tells it again).
    var stateVersion: Int { 3 }
    /// The control state came with the hand-over record.
    private var controlToldRestored = false

    struct SavedState: Codable {
        struct Pair: Codable {
            var rxPosition: Int, txPosition: Int
            var rxPool: PoolPlacement, txPool: PoolPlacement
            var rx: Counters, tx: Counters
        }
        var pairs: [Pair]
        var controlPosition: Int?
        var control: NetControl.Told?
    }

    /// Collect what the device already returned (transmit completions,
    /// received packets go to the TAP); frames not yet read from the TAP stay
    /// in its queue for the successor. A half-returned mergeable packet is dropped.
    func quiesce(_ driver: DeviceDriver) throws {
        for p in pairs {
            try reclaimTransmit(p, driver)
            try receive(p, driver)
            if !p.partial.isEmpty { p.rx.drops &+= 1; dropPartial(p) }
        }
    }

    func saveState() throws -> Data {
        let saved = SavedState(pairs: pairs.map {
            .init(rxPosition: $0.rxPosition, txPosition: $0.txPosition,
                  rxPool: PoolPlacement($0.rxPoolState), txPool: PoolPlacement($0.txPoolState), rx: $0.rx, tx: $0.tx)
        }, controlPosition: controlPosition, control: control.told)
        return try JSONEncoder().encode(saved)
    }

    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws {
        guard version == 2 || version == 3 else { throw PluginError("net state version \(version) unknown (this plugin reads 2 and 3)") }
        let saved = try JSONDecoder().decode(SavedState.self, from: state)
        guard !saved.pairs.isEmpty, saved.pairs.count <= taps.count else {
            throw PluginError("\(saved.pairs.count) queue pair(s) in the record, \(taps.count) TAP queue(s) here")
        }
        var restored: [QueuePair] = []
        for (i, s) in saved.pairs.enumerated() {
            guard s.rxPosition == 2 * i, s.txPosition == 2 * i + 1, s.txPosition < driver.queues.count,
                  driver.queues[s.rxPosition].name == "receiveq\(i)", driver.queues[s.txPosition].name == "transmitq\(i)" else {
                throw PluginError("queue pair \(i) in the record does not match the restored queues")
            }
            let rx = try driver.restoredPool(s.rxPool, queue: s.rxPosition, "receiveq\(i)")
            let tx = try driver.restoredPool(s.txPool, queue: s.txPosition, "transmitq\(i)")
            guard tx.bufferSize > NetHeader.size, rx.bufferSize > NetHeader.size else { throw PluginError("buffers too small") }
            let p = QueuePair(tap: taps[i], rxPosition: s.rxPosition, txPosition: s.txPosition, rxPool: rx, txPool: tx)
            p.rx = s.rx
            p.tx = s.tx
            restored.append(p)
        }
        if let c = saved.controlPosition {
            // Chains in flight there are requests that timed out: the next request drops their late answers.
            guard c < driver.queues.count, driver.queues[c].name == "controlq" else {
                throw PluginError("control queue in the record does not match")
            }
        }
        negotiated = NetFeatures(rawValue: driver.negotiated)
        controlPosition = saved.controlPosition
        pairs = restored
        if let told = saved.control {
            control.told = told
            controlToldRestored = true
        }
    }

    /// A record of the real shape (four pairs, a control queue) through
    /// the coder once; the result is dropped.
    func rehearseState() {
        let pool = PoolPlacement(offset: 0, length: 4096, bufferSize: 4096)
        let pair = SavedState.Pair(rxPosition: 0, txPosition: 1, rxPool: pool, txPool: pool, rx: Counters(), tx: Counters())
        let sample = SavedState(pairs: Array(repeating: pair, count: 4), controlPosition: 8, control: control.told)
        _ = try? JSONDecoder().decode(SavedState.self, from: JSONEncoder().encode(sample))
    }

    func continueAfterHandover(_ driver: DeviceDriver) throws {
        try taps[0].setOffload(TAPOffloads.flags(negotiated))
        // A successor with the record's control state sends only what changed.
        if !controlToldRestored { control.forget() }
        controlToldRestored = false
        if let controlPosition { control.sync(driver, controlPosition, negotiated) }
        for p in pairs {
            p.txBlocked = false
            driver.queues[p.txPosition].queue.disableInterrupts()
            try reclaimTransmit(p, driver)
            try blockTransmitIfFull(p, driver)
            try receive(p, driver)
        }
        configChanged(driver)
    }

    /// Link state → TAP carrier (VIRTIO_NET_F_STATUS, §5.1.4); an
    /// announcement request (VIRTIO_NET_S_ANNOUNCE) → gratuitous frames + ack.
    func configChanged(_ driver: DeviceDriver) {
        if case .text(let link)? = driver.config["link"] {
            do { try taps[0].setCarrier(link == "up") } catch {
                PluginLog.warning("net \(driver.device.info.address): carrier: \(error)")
            }
        }
        if case .number(let status)? = driver.config["status"], status & NetControl.statusAnnounce != 0,
           negotiated.contains(.guestAnnounce), let controlPosition, let p = pairs.first {
            control.announce(driver, controlPosition) { frames in transmit(frames, on: p, driver) }
        }
    }

    /// Queue frames this plugin made (announcements) on pair `p`'s transmit
    /// queue, each behind an all-zero vnet header; returns how many went.
    private func transmit(_ frames: [[UInt8]], on p: QueuePair, _ driver: DeviceDriver) -> Int {
        let q = driver.queues[p.txPosition]
        try? reclaimTransmit(p, driver)
        var sent = 0
        for frame in frames {
            guard q.queue.freeDescriptors > 0, let slot = p.txPoolState.take() else { p.tx.drops &+= 1; continue }
            let bytes = [UInt8](repeating: 0, count: NetHeader.size) + frame
            guard bytes.count <= p.txPoolState.bufferSize else { p.txPoolState.give(slot); continue }
            driver.device.region.copy(bytes, into: p.txPoolState.slice(slot))
            do { try queueTransmit(p, slot: slot, length: bytes.count, driver) } catch {
                p.txPoolState.give(slot)
                p.tx.errors &+= 1
                continue
            }
            sent += 1
        }
        if sent > 0 { publish(p.txPosition, &p.tx, driver) }
        return sent
    }
}
