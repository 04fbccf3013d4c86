import VirtioCore

/// A virtio-net device (virtio 1.2 §5.1) whose wire is a loop: every frame
/// the driver transmits on tx (queue 1) arrives on rx (queue 0), virtio-net
/// header included. Without an rx buffer the frame is dropped and counted.
public final class LoopbackNetModel: SoftDeviceModel, @unchecked Sendable {
    // SAFETY (Sendable): `service` runs on one thread at a time (see SoftDevice).
    public static let headerLength = 12 // struct virtio_net_hdr with num_buffers (§5.1.6)
    public let deviceType = DeviceType.network
    public let deviceFeatures: UInt64
    public let queueSizes: [Int]
    public let mac: [UInt8]
    public private(set) var delivered = 0
    public private(set) var dropped = 0
    private var txChain = DeviceChain()
    private var rxChain = DeviceChain()
    private var frame = [UInt8](repeating: 0, count: 65_550)

    public init(features: UInt64, queueSize: Int = 256, mac: [UInt8] = [0x52, 0x54, 0, 0x12, 0x34, 0x56]) {
        self.deviceFeatures = features | NetFeatures.mac.rawValue | NetFeatures.status.rawValue
        self.queueSizes = [queueSize, queueSize]
        self.mac = mac
    }

    /// mac[6], status u16 (VIRTIO_NET_S_LINK_UP), max_virtqueue_pairs u16, mtu u16 (§5.1.4).
    public func config() -> [UInt8] { mac + [1, 0, 1, 0, 0xdc, 0x05] }

    public func service(queue index: Int, queues: [DeviceQueue?]) -> [Int] {
        guard let rx = queues[0], let tx = queues[1] else { return [] }
        var txDone = false, rxDone = false
        while tx.pop(into: &txChain) {
            let n = frame.withUnsafeMutableBytes { tx.read(txChain, into: $0) }
            if n >= Self.headerLength, rx.pop(into: &rxChain), rxChain.writableCapacity >= n {
                let w = frame.withUnsafeBytes { rx.write(rxChain, from: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                rx.push(rxChain, length: UInt32(w))
                delivered += 1
                rxDone = true
            } else {
                dropped += 1
            }
            tx.push(txChain, length: 0)
            txDone = true
        }
        var irq: [Int] = []
        if rxDone, rx.commit() { irq.append(0) }
        if txDone, tx.commit() { irq.append(1) }
        return irq
    }
}
