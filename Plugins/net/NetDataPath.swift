import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// virtio-net's data path between the device's first queue pair and a TAP
/// interface (virtio 1.2 §5.1.6). Frames never get copied in this process:
/// the TAP fd reads straight into a transmit buffer in DMA memory, and a
/// received buffer is written straight from DMA memory to the TAP fd. The
/// TAP's vnet header is the device's `struct virtio_net_hdr` (12 bytes with
/// VERSION_1), so both directions pass it through unchanged.
final class NetDataPath: DataPath {
    static let receiveQueue = 0
    static let transmitQueue = 1
    static let headerSize = 12
    /// Header + a full 1500-byte-MTU Ethernet frame, rounded up.
    static let bufferSize = 2048

    let tap: TAPInterface
    private var rxPool: DMABufferPool?
    private var txPool: DMABufferPool?
    private var stats = [Counters(), Counters()]
    /// Transmit is paused (TAP not polled) while no transmit buffer is free.
    private var txBlocked = false

    struct Counters {
        var packets: UInt64 = 0, bytes: UInt64 = 0, drops: UInt64 = 0, errors: UInt64 = 0, kicks: UInt64 = 0
        var dictionary: [String: UInt64] { ["packets": packets, "bytes": bytes, "drops": drops, "errors": errors, "kicks": kicks] }
    }

    init(device: AttachedDevice) throws {
        guard let tap = device.tap else { throw PluginError("the net plugin needs a TAP interface from the supervisor") }
        self.tap = tap
    }

    var pollFDs: [FileDescriptor] { txBlocked ? [] : [tap.fd] }

    var facts: [String: ConfigValue] { ["interface": .text(tap.name)] }

    func counters(queue index: Int) -> [String: UInt64] { index < stats.count ? stats[index].dictionary : [:] }

    func start(_ driver: DeviceDriver) throws {
        guard driver.queues.count >= 2 else { throw PluginError("device has no receive/transmit queue pair") }
        let rx = driver.queues[Self.receiveQueue].queue, tx = driver.queues[Self.transmitQueue].queue
        rxPool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.bufferSize, count: rx.size)
        txPool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.bufferSize, count: tx.size)
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
        // Up to a ring's worth per wake-up, then publish once (one kick for the batch).
        while added < tx.size, tx.freeDescriptors > 0, let slot = txPool!.take() {
            let s = txPool!.slice(slot)
            let n = read(tap.fd.rawValue, region.pointer(s), s.length)
            if n < 0 {
                txPool!.give(slot)
                if errno != EAGAIN && errno != EINTR { stats[Self.transmitQueue].errors &+= 1 }
                break
            }
            guard n > Self.headerSize else {
                txPool!.give(slot)
                stats[Self.transmitQueue].drops &+= 1
                continue
            }
            try tx.add([.readable(region.deviceAddress(s), n)], token: UInt64(slot))
            stats[Self.transmitQueue].packets &+= 1
            stats[Self.transmitQueue].bytes &+= UInt64(n - Self.headerSize)
            added += 1
        }
        txBlocked = txPool!.freeCount == 0 || tx.freeDescriptors == 0
        if added > 0, tx.publish() {
            driver.transport.notify(Self.transmitQueue)
            stats[Self.transmitQueue].kicks &+= 1
        }
    }

    private func reclaimTransmit(_ driver: DeviceDriver) throws {
        let tx = driver.queues[Self.transmitQueue].queue
        while let used = try tx.popUsed() {
            txPool!.give(Int(used.token))
        }
        txBlocked = false
    }

    func interrupt(queue index: Int, _ driver: DeviceDriver) throws {
        switch index {
        case Self.receiveQueue: try receive(driver)
        case Self.transmitQueue: try reclaimTransmit(driver)
        default: break
        }
    }

    /// Hand every received frame to the TAP, then give the buffers back to the device.
    private func receive(_ driver: DeviceDriver) throws {
        let rx = driver.queues[Self.receiveQueue].queue
        let region = driver.device.region
        repeat {
            while let used = try rx.popUsed() {
                let slot = Int(used.token)
                let s = rxPool!.slice(slot)
                // The queue core checked used.length <= the buffer; the header must fit too.
                let n = Int(used.length)
                if n <= Self.headerSize || !Self.headerIsSane(region.pointer(s)) {
                    stats[Self.receiveQueue].drops &+= 1
                } else if write(tap.fd.rawValue, region.pointer(s), n) == n {
                    stats[Self.receiveQueue].packets &+= 1
                    stats[Self.receiveQueue].bytes &+= UInt64(n - Self.headerSize)
                } else {
                    // The kernel refused the frame (or the queue is full): count it, go on.
                    stats[Self.receiveQueue].errors &+= 1
                }
                rxPool!.give(slot)
            }
            try refillReceive(driver)
        } while rx.enableInterrupts()
    }

    /// Without guest offloads negotiated the device may not ask for GSO or a
    /// partial checksum (§5.1.6.3); such a header would make the kernel do
    /// work on our behalf it was never told about.
    static func headerIsSane(_ p: UnsafeMutableRawPointer) -> Bool {
        let flags = p.load(fromByteOffset: 0, as: UInt8.self)
        let gsoType = p.load(fromByteOffset: 1, as: UInt8.self)
        return flags & ~0x2 == 0 && gsoType == 0 // only DATA_VALID; GSO_NONE
    }

    /// Link state → TAP carrier (VIRTIO_NET_F_STATUS, §5.1.4).
    func configChanged(_ driver: DeviceDriver) {
        guard case .text(let link)? = driver.config["link"] else { return }
        do { try tap.setCarrier(link == "up") } catch {
            PluginLog.warning("net \(driver.device.info.address): carrier: \(error)")
        }
    }
}
