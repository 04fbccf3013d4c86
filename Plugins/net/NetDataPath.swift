import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// virtio-net's data path between the device's first queue pair and a TAP
/// interface (virtio 1.2 §5.1.6). Frames are never copied in this process:
/// the TAP fd reads straight into a transmit buffer in DMA memory, and
/// received buffers are written (gathered, for mergeable buffers) straight
/// from DMA memory to the TAP fd. The TAP's vnet header is the device's
/// `struct virtio_net_hdr`, so checksum and GSO metadata pass through both
/// ways; TAP offloads mirror what the device accepts on transmit.
final class NetDataPath: DataPath {
    static let receiveQueue = 0
    static let transmitQueue = 1
    /// Receive buffers: a page each; packets larger than that arrive in
    /// several (VIRTIO_NET_F_MRG_RXBUF, §5.1.6.3.2).
    static let receiveBufferSize = 4096
    /// Transmit buffers take a whole TSO frame: 64 KiB + header.
    static let transmitBufferSize = 65536 + 64
    static let transmitBuffers = 96
    static let batch = 64

    let tap: TAPInterface
    private var negotiated = NetFeatures()
    private var rxPool: DMABufferPool?
    private var txPool: DMABufferPool?
    private var stats = [Counters(), Counters()]
    /// Transmit is paused (TAP not polled) while no transmit buffer is free.
    private var txBlocked = false
    /// A mergeable packet whose later buffers have not been returned yet.
    private var partial: [(slot: Int, length: Int)] = []
    private var partialNeeded = 0
    private var iovecs = [iovec](repeating: iovec(), count: 64)

    struct Counters {
        var packets: UInt64 = 0, bytes: UInt64 = 0, drops: UInt64 = 0, errors: UInt64 = 0, kicks: UInt64 = 0
        var malformed: UInt64 = 0
        var dictionary: [String: UInt64] {
            ["packets": packets, "bytes": bytes, "drops": drops, "errors": errors, "kicks": kicks, "malformed": malformed]
        }
    }

    init(device: AttachedDevice) throws {
        guard let tap = device.tap else { throw PluginError("the net plugin needs a TAP interface from the supervisor") }
        self.tap = tap
    }

    var pollFDs: [FileDescriptor] { txBlocked ? [] : [tap.fd] }

    var facts: [String: ConfigValue] {
        ["interface": .text(tap.name), "tap_offloads": .text(Self.offloadNames(TAPOffloads.flags(negotiated)))]
    }

    static func offloadNames(_ f: UInt32) -> String {
        let names = [(0x01, "csum"), (0x02, "tso4"), (0x04, "tso6"), (0x08, "tso-ecn")].filter { f & UInt32($0.0) != 0 }.map(\.1)
        return names.isEmpty ? "none" : names.joined(separator: " ")
    }

    func counters(queue index: Int) -> [String: UInt64] { index < stats.count ? stats[index].dictionary : [:] }

    func start(_ driver: DeviceDriver) throws {
        guard driver.queues.count >= 2 else { throw PluginError("device has no receive/transmit queue pair") }
        negotiated = NetFeatures(rawValue: driver.negotiated)
        let rx = driver.queues[Self.receiveQueue].queue, tx = driver.queues[Self.transmitQueue].queue
        // Without mergeable buffers every buffer must hold a whole packet
        // (§5.1.6.3.1); guest GSO is only negotiated with mergeable buffers.
        let rxSize = negotiated.contains(.mergeableRxBuffers) ? Self.receiveBufferSize : 2048
        rxPool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: rxSize, count: rx.size)
        txPool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.transmitBufferSize,
                                   count: min(tx.size, Self.transmitBuffers))
        try tap.setOffload(TAPOffloads.flags(negotiated))
        // Transmit completions are collected on the next TAP read; interrupts
        // for them only while transmit is blocked on free buffers.
        tx.disableInterrupts()
        try refillReceive(driver)
        configChanged(driver)
    }

    /// Post every free receive buffer; kick if the device wants it.
    private func refillReceive(_ driver: DeviceDriver) throws {
        let rx = driver.queues[Self.receiveQueue].queue
        let region = driver.device.region
        var added = false
        while rx.freeDescriptors > 0, let slot = rxPool!.take() {
            let s = rxPool!.slice(slot)
            do {
                try rx.add([.writable(region.deviceAddress(s), s.length)], token: UInt64(slot))
            } catch {
                rxPool!.give(slot)
                throw PluginError("receive queue: \(error)")
            }
            added = true
        }
        if added, rx.publish() {
            driver.transport.notify(Self.receiveQueue)
            stats[Self.receiveQueue].kicks &+= 1
        }
    }

    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        try reclaimTransmit(driver)
        let tx = driver.queues[Self.transmitQueue].queue
        let region = driver.device.region
        var added = 0
        // A batch per wake-up, then publish once (one kick at most for the batch).
        while added < Self.batch, tx.freeDescriptors > 0, let slot = txPool!.take() {
            let s = txPool!.slice(slot)
            let n = read(tap.fd.rawValue, region.pointer(s), s.length)
            if n < 0 {
                txPool!.give(slot)
                if errno != EAGAIN && errno != EINTR { stats[Self.transmitQueue].errors &+= 1 }
                break
            }
            guard n > NetHeader.size else {
                txPool!.give(slot)
                stats[Self.transmitQueue].drops &+= 1
                continue
            }
            // num_buffers is the device's field on receive; zero it on transmit (§5.1.6.2).
            region.pointer(s).storeBytes(of: 0, toByteOffset: 10, as: UInt16.self)
            try tx.add([.readable(region.deviceAddress(s), n)], token: UInt64(slot))
            stats[Self.transmitQueue].packets &+= 1
            stats[Self.transmitQueue].bytes &+= UInt64(n - NetHeader.size)
            added += 1
        }
        if added > 0, tx.publish() {
            driver.transport.notify(Self.transmitQueue)
            stats[Self.transmitQueue].kicks &+= 1
        }
        if txPool!.freeCount == 0 || tx.freeDescriptors == 0 {
            // Stop reading the TAP until the device returns buffers; ask for
            // an interrupt (and check once more: they may be back already).
            txBlocked = true
            if tx.enableInterrupts() { try reclaimTransmit(driver) }
        }
    }

    private func reclaimTransmit(_ driver: DeviceDriver) throws {
        let tx = driver.queues[Self.transmitQueue].queue
        var reclaimed = false
        while let used = try tx.popUsed() {
            txPool!.give(Int(used.token))
            reclaimed = true
        }
        if txBlocked, reclaimed {
            txBlocked = false
            tx.disableInterrupts()
        }
    }

    func interrupt(queue index: Int, _ driver: DeviceDriver) throws {
        switch index {
        case Self.receiveQueue: try receive(driver)
        case Self.transmitQueue: try reclaimTransmit(driver)
        default: break
        }
    }

    /// Hand every received packet to the TAP, then give the buffers back.
    private func receive(_ driver: DeviceDriver) throws {
        let rx = driver.queues[Self.receiveQueue].queue
        let mergeable = negotiated.contains(.mergeableRxBuffers)
        repeat {
            while let used = try rx.popUsed() {
                // The queue core checked used.length <= the buffer's size.
                let piece = (slot: Int(used.token), length: Int(used.length))
                if used.lengthExceeded {
                    // The device claims more than the buffer holds: drop the
                    // packet this buffer belongs to, count it, go on.
                    stats[Self.receiveQueue].malformed &+= 1
                    stats[Self.receiveQueue].drops &+= 1
                    rxPool!.give(piece.slot)
                    for p in partial { rxPool!.give(p.slot) }
                    partial.removeAll(keepingCapacity: true)
                    partialNeeded = 0
                    continue
                }
                if partialNeeded == 0 {
                    let p = driver.device.region.pointer(rxPool!.slice(piece.slot))
                    let count = mergeable ? Int(UInt16(littleEndian: p.load(fromByteOffset: 10, as: UInt16.self))) : 1
                    guard piece.length >= NetHeader.size, count >= 1, count <= min(rx.size, iovecs.count) else {
                        // A lying header: drop this buffer; later pieces of it look like packets and fail the same check.
                        stats[Self.receiveQueue].malformed &+= 1
                        stats[Self.receiveQueue].drops &+= 1
                        rxPool!.give(piece.slot)
                        continue
                    }
                    partialNeeded = count
                }
                partial.append(piece)
                if partial.count == partialNeeded { deliver(driver) }
            }
            try refillReceive(driver)
        } while rx.enableInterrupts()
    }

    /// Write one complete packet (header + frame, maybe in several buffers) to the TAP.
    private func deliver(_ driver: DeviceDriver) {
        let region = driver.device.region
        defer {
            for p in partial { rxPool!.give(p.slot) }
            partial.removeAll(keepingCapacity: true)
            partialNeeded = 0
        }
        let total = partial.reduce(0) { $0 + $1.length }
        let h = region.pointer(rxPool!.slice(partial[0].slot))
        let ok = NetHeader.isAcceptable(
            flags: h.load(fromByteOffset: 0, as: UInt8.self), gsoType: h.load(fromByteOffset: 1, as: UInt8.self),
            csumStart: UInt16(littleEndian: h.load(fromByteOffset: 6, as: UInt16.self)),
            csumOffset: UInt16(littleEndian: h.load(fromByteOffset: 8, as: UInt16.self)),
            frameLength: total - NetHeader.size, negotiated: negotiated)
        guard ok, total > NetHeader.size else {
            stats[Self.receiveQueue].malformed &+= 1
            stats[Self.receiveQueue].drops &+= 1
            return
        }
        for (i, p) in partial.enumerated() {
            iovecs[i] = iovec(iov_base: region.pointer(rxPool!.slice(p.slot)), iov_len: p.length)
        }
        let n = iovecs.withUnsafeBufferPointer { writev(tap.fd.rawValue, $0.baseAddress, Int32(partial.count)) }
        if n == total {
            stats[Self.receiveQueue].packets &+= 1
            stats[Self.receiveQueue].bytes &+= UInt64(total - NetHeader.size)
        } else {
            // The kernel refused the frame (interface down, bad GSO): count it, go on.
            stats[Self.receiveQueue].errors &+= 1
        }
    }

    /// Link state → TAP carrier (VIRTIO_NET_F_STATUS, §5.1.4).
    func configChanged(_ driver: DeviceDriver) {
        guard case .text(let link)? = driver.config["link"] else { return }
        do { try tap.setCarrier(link == "up") } catch {
            PluginLog.warning("net \(driver.device.info.address): carrier: \(error)")
        }
    }
}
