/// Where a virtqueue's three areas live, as device addresses (IOVA).
/// Split rings: descriptor table, available ring, used ring (virtio 1.2 §2.7).
/// Packed rings: descriptor ring, driver and device event suppression (§2.8.10).
public struct QueueAddresses: Sendable, Hashable {
    public var descriptors: UInt64
    public var driverArea: UInt64
    public var deviceArea: UInt64
    public init(descriptors: UInt64, driverArea: UInt64, deviceArea: UInt64) {
        self.descriptors = descriptors
        self.driverArea = driverArea
        self.deviceArea = deviceArea
    }
}

/// Interrupt status (virtio 1.2 §4.1.4.5 "ISR status capability").
public struct InterruptStatus: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let queue = InterruptStatus(rawValue: 1)
    public static let configChange = InterruptStatus(rawValue: 2)
}

/// "No vector" for MSI-X vector registers (virtio 1.2 §4.1.4.3).
public let noMSIXVector: UInt16 = 0xffff

public enum TransportError: Error, Equatable, CustomStringConvertible {
    case queueIndexOutOfRange(Int, available: Int)
    case queueSizeUnsupported(requested: Int, maximum: Int)
    case configOutOfRange(offset: Int, length: Int, size: Int)
    case configNeverStable(attempts: Int)
    case vectorRejected(queue: Int?, vector: UInt16)
    case resetTimedOut
    case io(String)

    public var description: String {
        switch self {
        case .queueIndexOutOfRange(let q, let n): "queue \(q) does not exist (device has \(n))"
        case .queueSizeUnsupported(let r, let m): "queue size \(r) not supported (maximum \(m))"
        case .configOutOfRange(let o, let l, let s): "config read \(o)+\(l) beyond config size \(s)"
        case .configNeverStable(let n): "config generation kept changing over \(n) reads"
        case .vectorRejected(let q, let v):
            "device rejected MSI-X vector \(v) for \(q.map { "queue \($0)" } ?? "config changes")"
        case .resetTimedOut: "device did not finish reset"
        case .io(let s): s
        }
    }
}

/// How the driver talks to a virtio device, independent of the bus
/// (virtio 1.2 §4 "Virtio Transport Options"). PCI over VFIO implements it
/// for real devices; the software device implements it for tests.
///
/// Every value read here comes from the device and is untrusted: callers
/// check sizes and counts before use.
public protocol Transport: AnyObject {
    var deviceType: DeviceType { get }

    /// Write 0 to the status and wait until the device reads back 0 (§2.4).
    func reset() throws
    func readStatus() -> DeviceStatus
    func writeStatus(_ status: DeviceStatus)

    /// All 64 device feature bits (feature select 0 and 1).
    func readDeviceFeatures() -> UInt64
    func writeDriverFeatures(_ features: UInt64)

    /// Number of virtqueues the device offers.
    var queueCount: Int { get }
    /// Maximum size of queue `index` (0 means the queue is not available).
    func maxQueueSize(_ index: Int) throws -> Int
    /// Program size, addresses and MSI-X vector of queue `index`, then enable it.
    func setUpQueue(_ index: Int, size: Int, addresses: QueueAddresses, msixVector: UInt16) throws
    /// Reset a single queue (VIRTIO_F_RING_RESET, §2.6.1); not every transport can.
    func resetQueue(_ index: Int) throws
    /// Tell the device there is new work in queue `index` (§2.7.13 / §4.1.5.2).
    func notify(_ index: Int)
    /// Route configuration-change interrupts to an MSI-X vector.
    func setConfigVector(_ vector: UInt16) throws

    /// Read and clear the ISR status (INTx / no-MSI-X path).
    func readInterruptStatus() -> InterruptStatus

    var configGeneration: UInt32 { get }
    var configSize: Int { get }
    /// Copy device-specific configuration bytes; `offset + buffer.count <= configSize`.
    func readConfigBytes(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws
    func writeConfigBytes(offset: Int, from buffer: UnsafeRawBufferPointer) throws
}

extension Transport {
    /// Read `length` config bytes as one consistent snapshot: re-read until the
    /// config generation is the same before and after (virtio 1.2 §2.5.1).
    public func readConfig(offset: Int, length: Int, maxAttempts: Int = 64) throws -> [UInt8] {
        guard offset >= 0, length >= 0, offset + length <= configSize else {
            throw TransportError.configOutOfRange(offset: offset, length: length, size: configSize)
        }
        var bytes = [UInt8](repeating: 0, count: length)
        for _ in 0..<maxAttempts {
            let before = configGeneration
            try bytes.withUnsafeMutableBytes { try readConfigBytes(offset: offset, into: $0) }
            if configGeneration == before { return bytes }
        }
        throw TransportError.configNeverStable(attempts: maxAttempts)
    }

    /// Read a little-endian integer field of the device config (consistent snapshot).
    public func readConfig<T: FixedWidthInteger>(_: T.Type, at offset: Int) throws -> T {
        let bytes = try readConfig(offset: offset, length: MemoryLayout<T>.size)
        return bytes.reversed().reduce(T(0)) { ($0 << 8) | T($1) }
    }
}
