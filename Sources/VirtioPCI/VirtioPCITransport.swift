import Glibc
import VirtioCore
import VirtioSystem

/// The virtio PCI modern transport over a PCI function lent to userspace
/// (virtio 1.2 §4.1): the common configuration, notification, ISR and device
/// configuration structures in the BARs the capabilities name.
///
/// Any process holding the function's fds (a VFIO device fd, or
/// uio_pci_generic's sysfs files) can build one: the supervisor does, to
/// check features before it hands a device out, and so does the plugin that
/// drives it.
public final class VirtioPCITransport: Transport {
    public let deviceType: DeviceType
    public let capabilities: VirtioPCICapabilities
    public let function: any PCIFunction
    private var bars: [Int: MMIORegion] = [:]
    private let common: Window
    private let notifyWindow: Window
    private let isr: Window
    private let device: Window?
    /// Notification address offset (in the notify window) of each set-up queue.
    private var notifyOffsets: [Int: Int] = [:]

    /// A structure inside one BAR, with bounds already checked against the BAR.
    struct Window {
        let region: MMIORegion
        let offset: Int
        let length: Int
    }

    public convenience init(vfio: VFIODevice, deviceType: DeviceType) throws {
        try self.init(function: vfio, deviceType: deviceType)
    }

    public init(function: any PCIFunction, deviceType: DeviceType) throws {
        self.function = function
        self.deviceType = deviceType
        let config = try function.readPCIConfig()
        capabilities = try VirtioPCICapabilities.parse(config: config)
        var bars: [Int: MMIORegion] = [:]
        func window(_ l: VirtioStructureLocation, _ what: String) throws -> Window {
            if bars[l.bar] == nil {
                bars[l.bar] = try function.barRegion(l.bar)
            }
            let region = bars[l.bar]!
            guard l.offset + l.length <= region.size else {
                throw TransportError.io("virtio \(what) structure \(l.offset)+\(l.length) beyond BAR \(l.bar) of \(region.size) bytes")
            }
            return Window(region: region, offset: l.offset, length: l.length)
        }
        common = try window(capabilities.common, "common configuration")
        notifyWindow = try window(capabilities.notify, "notification")
        isr = try window(capabilities.isr, "ISR")
        device = try capabilities.device.map { try window($0, "device configuration") }
        self.bars = bars
    }

    /// The BARs mapped into this process (false: reached through pread/pwrite).
    public var barsMapped: Bool { bars.values.allSatisfy(\.isMapped) }
    /// Register accesses the VFIO device fd refused, over all BARs.
    public var failedRegisterAccesses: UInt64 { bars.values.reduce(0) { $0 &+ $1.failedAccesses } }

    // MARK: common configuration (§4.1.4.3)

    private func c8(_ o: Int) -> UInt8 { common.region.load8(common.offset + o) }
    private func c16(_ o: Int) -> UInt16 { common.region.load16(common.offset + o) }
    private func c32(_ o: Int) -> UInt32 { common.region.load32(common.offset + o) }
    private func set8(_ o: Int, _ v: UInt8) { common.region.store8(common.offset + o, v) }
    private func set16(_ o: Int, _ v: UInt16) { common.region.store16(common.offset + o, v) }
    private func set32(_ o: Int, _ v: UInt32) { common.region.store32(common.offset + o, v) }
    private func set64(_ o: Int, _ v: UInt64) { common.region.store64(common.offset + o, v) }

    public func reset() throws {
        set8(CommonConfig.deviceStatus, 0)
        // §4.1.4.3.2: the driver waits for device_status to read back 0.
        for _ in 0..<2000 {
            if c8(CommonConfig.deviceStatus) == 0 {
                notifyOffsets.removeAll()
                return
            }
            usleep(500)
        }
        throw TransportError.resetTimedOut
    }

    public func readStatus() -> DeviceStatus { DeviceStatus(rawValue: c8(CommonConfig.deviceStatus)) }
    public func writeStatus(_ status: DeviceStatus) { set8(CommonConfig.deviceStatus, status.rawValue) }

    public func readDeviceFeatures() -> UInt64 {
        readFeatures(select: CommonConfig.deviceFeatureSelect, value: CommonConfig.deviceFeature)
    }

    /// The features the driver wrote (what the device runs with).
    public func readDriverFeatures() -> UInt64 {
        readFeatures(select: CommonConfig.driverFeatureSelect, value: CommonConfig.driverFeature)
    }

    /// A 64-bit feature word through its 32-bit select/value window (§4.1.4.3).
    private func readFeatures(select: Int, value: Int) -> UInt64 {
        set32(select, 0)
        let low = UInt64(c32(value))
        set32(select, 1)
        return UInt64(c32(value)) << 32 | low
    }

    public func writeDriverFeatures(_ features: UInt64) {
        set32(CommonConfig.driverFeatureSelect, 0)
        set32(CommonConfig.driverFeature, UInt32(truncatingIfNeeded: features))
        set32(CommonConfig.driverFeatureSelect, 1)
        set32(CommonConfig.driverFeature, UInt32(truncatingIfNeeded: features >> 32))
    }

    /// num_queues as the device states it (a u16); queue indices are checked against it.
    public var queueCount: Int { Int(c16(CommonConfig.numQueues)) }

    private func select(_ index: Int) throws {
        let n = queueCount
        guard index >= 0, index < n else { throw TransportError.queueIndexOutOfRange(index, available: n) }
        set16(CommonConfig.queueSelect, UInt16(index))
    }

    public func maxQueueSize(_ index: Int) throws -> Int {
        try select(index)
        return Int(c16(CommonConfig.queueSize))
    }

    public func setUpQueue(_ index: Int, size: Int, addresses: QueueAddresses, msixVector: UInt16) throws {
        try select(index)
        let maximum = Int(c16(CommonConfig.queueSize))
        guard size > 0, size <= maximum else { throw TransportError.queueSizeUnsupported(requested: size, maximum: maximum) }
        let off = try notifyOffset(index)
        set16(CommonConfig.queueSize, UInt16(size))
        set16(CommonConfig.queueMSIXVector, msixVector)
        // §4.1.4.3.1: the device answers NO_VECTOR when it cannot take the vector.
        if msixVector != noMSIXVector, c16(CommonConfig.queueMSIXVector) != msixVector {
            throw TransportError.vectorRejected(queue: index, vector: msixVector)
        }
        set64(CommonConfig.queueDesc, addresses.descriptors)
        set64(CommonConfig.queueDriver, addresses.driverArea)
        set64(CommonConfig.queueDevice, addresses.deviceArea)
        set16(CommonConfig.queueEnable, 1)
        notifyOffsets[index] = off
    }

    /// Take over queue `index` that another process set up and the device
    /// is still running (hot reload): nothing is written; the device's
    /// registers must show the queue enabled with exactly this size, these
    /// ring addresses and this vector, or the hand-over is refused.
    public func adoptQueue(_ index: Int, size: Int, addresses: QueueAddresses, msixVector: UInt16) throws {
        try select(index)
        func c64(_ o: Int) -> UInt64 { UInt64(c32(o)) | UInt64(c32(o + 4)) << 32 }
        let found = (enabled: c16(CommonConfig.queueEnable), size: Int(c16(CommonConfig.queueSize)),
                     vector: c16(CommonConfig.queueMSIXVector),
                     addresses: QueueAddresses(descriptors: c64(CommonConfig.queueDesc), driverArea: c64(CommonConfig.queueDriver),
                                               deviceArea: c64(CommonConfig.queueDevice)))
        guard found.enabled == 1, found.size == size, found.addresses == addresses, found.vector == msixVector else {
            throw TransportError.io("queue \(index) on the device (enabled \(found.enabled), size \(found.size), vector \(found.vector), "
                + "rings \(found.addresses)) is not the queue in the hand-over record (size \(size), vector \(msixVector), rings \(addresses))")
        }
        notifyOffsets[index] = try notifyOffset(index)
    }

    /// Where the selected queue `index` is notified: queue_notify_off ×
    /// notify_off_multiplier (§4.1.4.4), device-stated, so checked against
    /// the notify structure before it is ever used.
    private func notifyOffset(_ index: Int) throws -> Int {
        let off = Int(c16(CommonConfig.queueNotifyOff)) * Int(capabilities.notifyOffsetMultiplier)
        guard off + 2 <= notifyWindow.length else {
            throw TransportError.io("queue \(index) notify offset \(off) beyond notify structure of \(notifyWindow.length) bytes")
        }
        return off
    }

    public func resetQueue(_ index: Int) throws {
        guard common.length >= CommonConfig.queueReset + 2 else {
            throw TransportError.io("device has no queue_reset register (VIRTIO_F_RING_RESET)")
        }
        try select(index)
        set16(CommonConfig.queueReset, 1)
        // §4.1.4.3.2: queue_reset reads 1 once the device has reset the queue.
        for _ in 0..<2000 where c16(CommonConfig.queueReset) != 1 { usleep(500) }
        guard c16(CommonConfig.queueReset) == 1 else { throw TransportError.resetTimedOut }
        notifyOffsets[index] = nil
    }

    public func notify(_ index: Int) {
        // Only queues this transport set up have a checked notify address.
        guard let off = notifyOffsets[index] else { return }
        notifyWindow.region.store16(notifyWindow.offset + off, UInt16(truncatingIfNeeded: index))
    }

    public func setConfigVector(_ vector: UInt16) throws {
        set16(CommonConfig.configMSIXVector, vector)
        if vector != noMSIXVector, c16(CommonConfig.configMSIXVector) != vector {
            throw TransportError.vectorRejected(queue: nil, vector: vector)
        }
    }

    public func readInterruptStatus() -> InterruptStatus {
        InterruptStatus(rawValue: isr.region.load8(isr.offset) & 0x3)
    }

    public var configGeneration: UInt32 { UInt32(c8(CommonConfig.configGeneration)) }
    public var configSize: Int { device?.length ?? 0 }

    public func readConfigBytes(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard let device, offset >= 0, offset + buffer.count <= device.length else {
            throw TransportError.configOutOfRange(offset: offset, length: buffer.count, size: configSize)
        }
        device.region.readBytes(device.offset + offset, into: buffer)
    }

    public func writeConfigBytes(offset: Int, from buffer: UnsafeRawBufferPointer) throws {
        guard let device, offset >= 0, offset + buffer.count <= device.length else {
            throw TransportError.configOutOfRange(offset: offset, length: buffer.count, size: configSize)
        }
        for i in 0..<buffer.count { device.region.store8(device.offset + offset + i, buffer[i]) }
    }
}
