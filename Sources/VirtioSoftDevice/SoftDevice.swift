import Synchronization
import VirtioCore

/// What a software device does when the driver notifies a queue.
public protocol SoftDeviceModel: AnyObject, Sendable {
    var deviceType: DeviceType { get }
    var deviceFeatures: UInt64 { get }
    var queueSizes: [Int] { get }
    /// Device-specific configuration space.
    func config() -> [UInt8]
    /// Service queue `index`; return the queues that need an interrupt.
    func service(queue index: Int, queues: [DeviceQueue?]) -> [Int]
}

/// A virtio device in software that implements `Transport`, so the driver
/// side (initialisation, queues, config) runs against it exactly as against
/// PCI over VFIO. Queues live in the same `DMARegion` the driver uses.
///
/// By default notifications are served synchronously on the notifying
/// thread; `SoftDeviceRunner` serves them from a thread of its own.
public final class SoftDevice: Transport, @unchecked Sendable {
    // SAFETY (Sendable): control-plane fields are guarded by `lock`; the
    // data plane (`queues`) is only touched by whoever serves notifications,
    // which is one thread (the notifier, or the runner).
    public let model: any SoftDeviceModel
    public let region: DMARegion
    private let lock = Mutex<Void>(())
    private var status = DeviceStatus()
    private var driverFeatures: UInt64 = 0
    private var configBytes: [UInt8]
    private var generation: UInt32 = 0
    public private(set) var queues: [DeviceQueue?]
    /// Interrupts raised per queue (the software MSI-X vectors).
    public private(set) var interrupts: [Int]
    public private(set) var vectors: [UInt16]
    public private(set) var notifications: [Int]
    /// Called with the queue index whenever an interrupt is raised.
    public var onInterrupt: (@Sendable (Int) -> Void)?
    /// Called instead of serving synchronously (set by `SoftDeviceRunner`).
    public var onNotify: (@Sendable (Int) -> Void)?
    /// Device-side wish for notifications (e.g. off while polling).
    public var eventIndexNegotiated: Bool { driverFeatures & TransportFeatures.eventIndex.rawValue != 0 }
    public var negotiatedFeatures: UInt64 { driverFeatures }
    /// A device that clears FEATURES_OK whatever the driver wrote (tests).
    public var rejectFeatures = false
    /// Make the next N config reads race a config change (generation bumps), for tests.
    public var configChurn = 0

    public init(model: any SoftDeviceModel, region: DMARegion) {
        self.model = model
        self.region = region
        self.configBytes = model.config()
        let n = model.queueSizes.count
        self.queues = Array(repeating: nil, count: n)
        self.interrupts = Array(repeating: 0, count: n)
        self.notifications = Array(repeating: 0, count: n)
        self.vectors = Array(repeating: noMSIXVector, count: n)
    }

    public var deviceType: DeviceType { model.deviceType }

    public func reset() throws {
        lock.withLock { _ in
            status = []
            driverFeatures = 0
            for i in queues.indices { queues[i] = nil }
        }
    }

    public func readStatus() -> DeviceStatus { lock.withLock { _ in status } }

    public func writeStatus(_ s: DeviceStatus) {
        lock.withLock { _ in
            var s = s
            // §2.2.2: FEATURES_OK stays clear if the driver asked for something not offered.
            if s.contains(.featuresOK), rejectFeatures || driverFeatures & ~model.deviceFeatures != 0 {
                s.remove(.featuresOK)
            }
            status = s
        }
    }

    public func readDeviceFeatures() -> UInt64 { model.deviceFeatures }
    public func writeDriverFeatures(_ f: UInt64) { lock.withLock { _ in driverFeatures = f } }
    public var queueCount: Int { model.queueSizes.count }

    public func maxQueueSize(_ index: Int) throws -> Int {
        guard model.queueSizes.indices.contains(index) else {
            throw TransportError.queueIndexOutOfRange(index, available: queueCount)
        }
        return model.queueSizes[index]
    }

    public func setUpQueue(_ index: Int, size: Int, addresses: QueueAddresses, msixVector: UInt16) throws {
        let max = try maxQueueSize(index)
        let packed = driverFeatures & TransportFeatures.ringPacked.rawValue != 0
        let layout: RingLayout = packed ? .packed : .split
        guard size >= 1, size <= max, layout == .packed || size & (size - 1) == 0 else {
            throw TransportError.queueSizeUnsupported(requested: size, maximum: max)
        }
        // This device accepts the contiguous layout `QueueGeometry` describes.
        let g = QueueGeometry(layout: layout, size: size)
        guard let area = region.slice(deviceAddress: addresses.descriptors, length: UInt32(g.totalLength)),
              addresses.driverArea == addresses.descriptors + UInt64(g.driverAreaOffset),
              addresses.deviceArea == addresses.descriptors + UInt64(g.deviceAreaOffset) else {
            throw TransportError.io("queue \(index): addresses outside DMA memory or not in QueueGeometry layout")
        }
        let q = DeviceQueue(layout: layout, size: size, region: region, area: area, eventIndex: eventIndexNegotiated)
        lock.withLock { _ in
            queues[index] = q
            vectors[index] = msixVector
        }
    }

    public func resetQueue(_ index: Int) throws {
        guard queues.indices.contains(index) else { throw TransportError.queueIndexOutOfRange(index, available: queueCount) }
        lock.withLock { _ in queues[index] = nil }
    }

    public func notify(_ index: Int) {
        guard queues.indices.contains(index) else { return }
        notifications[index] += 1
        if let onNotify { onNotify(index) } else { serve(index) }
    }

    /// Run the model for queue `index` and raise the interrupts it asks for.
    public func serve(_ index: Int) {
        guard readStatus().contains(.driverOK) else { return }
        for q in model.service(queue: index, queues: queues) {
            interrupts[q] += 1
            onInterrupt?(q)
        }
    }

    public func setConfigVector(_ vector: UInt16) throws {}
    public func readInterruptStatus() -> InterruptStatus { [] }

    public var configGeneration: UInt32 { lock.withLock { _ in generation } }
    public var configSize: Int { lock.withLock { _ in configBytes.count } }

    public func readConfigBytes(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        try lock.withLock { _ in
            guard offset >= 0, offset + buffer.count <= configBytes.count else {
                throw TransportError.configOutOfRange(offset: offset, length: buffer.count, size: configBytes.count)
            }
            for i in 0..<buffer.count { buffer[i] = configBytes[offset + i] }
            if configChurn > 0 {
                configChurn -= 1
                generation &+= 1
            }
        }
    }

    public func writeConfigBytes(offset: Int, from buffer: UnsafeRawBufferPointer) throws {
        try lock.withLock { _ in
            guard offset >= 0, offset + buffer.count <= configBytes.count else {
                throw TransportError.configOutOfRange(offset: offset, length: buffer.count, size: configBytes.count)
            }
            for i in 0..<buffer.count { configBytes[offset + i] = buffer[i] }
        }
    }

    /// Change config bytes as the device would (bumps the generation, §2.5.1).
    public func updateConfig(offset: Int, bytes: [UInt8]) {
        lock.withLock { _ in
            for (i, b) in bytes.enumerated() { configBytes[offset + i] = b }
            generation &+= 1
        }
    }
}
