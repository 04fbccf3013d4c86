/// The two virtqueue formats (virtio 1.2 §2.7 split, §2.8 packed).
public enum RingLayout: UInt8, Sendable, Codable, CustomStringConvertible {
    case split = 0
    case packed = 1
    public var description: String { self == .split ? "split" : "packed" }

    /// From its name in configuration and command lines ("split", "packed").
    public init?(name: String) {
        switch name {
        case "split": self = .split
        case "packed": self = .packed
        default: return nil
        }
    }
}

/// One piece of a buffer chain: device address, length, and who writes it.
public struct BufferSegment: Sendable, Hashable {
    public var address: UInt64
    public var length: UInt32
    public var isDeviceWritable: Bool
    public init(address: UInt64, length: UInt32, deviceWritable: Bool) {
        self.address = address
        self.length = length
        self.isDeviceWritable = deviceWritable
    }
    public static func readable(_ address: UInt64, _ length: Int) -> Self {
        Self(address: address, length: UInt32(length), deviceWritable: false)
    }
    public static func writable(_ address: UInt64, _ length: Int) -> Self {
        Self(address: address, length: UInt32(length), deviceWritable: true)
    }
}

/// A chain the device has returned. `length` is the number of bytes the device
/// says it wrote, already checked against the chain's writable capacity.
public struct UsedBuffer: Sendable, Hashable {
    /// What the driver attached to the chain when it added it.
    public let token: UInt64
    public let length: UInt32
    /// Head descriptor index (split) or buffer ID (packed).
    public let id: UInt16
    /// The device claimed to write more than the chain holds; `length` is 0
    /// and the buffer's contents are not to be trusted. Only reported when
    /// the queue tolerates it (`QueueOptions.tolerateOversizedLength`);
    /// otherwise that breaks the queue.
    public var lengthExceeded = false
}

/// Ring features that change how the driver side behaves.
public struct QueueOptions: Sendable, Hashable, Codable {
    /// VIRTIO_F_EVENT_IDX negotiated (§2.7.10, §2.8.10).
    public var eventIndex: Bool
    /// Room for indirect tables of this many descriptors per chain
    /// (0: VIRTIO_F_INDIRECT_DESC not used). §2.7.5.3, §2.8.19.
    public var indirectCapacity: Int
    /// A used length beyond the chain's writable bytes costs that one buffer
    /// (reported as `UsedBuffer.lengthExceeded`) instead of breaking the
    /// queue: for data paths that can drop a packet (virtio-net receive).
    /// IDs and indices out of range still break the queue.
    public var tolerateOversizedLength = false

    public init(eventIndex: Bool = false, indirectCapacity: Int = 0, tolerateOversizedLength: Bool = false) {
        self.eventIndex = eventIndex
        self.indirectCapacity = indirectCapacity
        self.tolerateOversizedLength = tolerateOversizedLength
    }

    /// Options matching a negotiated feature word.
    public init(negotiated: UInt64, indirectCapacity: Int = 16) {
        let f = TransportFeatures(rawValue: negotiated)
        self.eventIndex = f.contains(.eventIndex)
        self.indirectCapacity = f.contains(.indirectDescriptors) ? indirectCapacity : 0
    }
}

/// Something the device wrote that cannot be true. The queue that saw it is
/// broken until it is reset; nothing outside the queue is affected.
public enum DeviceViolation: Error, Sendable, Hashable, CustomStringConvertible {
    case usedIDOutOfRange(id: UInt32, queueSize: Int)
    case usedIDNotInFlight(id: UInt32)
    case usedLengthTooLong(id: UInt32, length: UInt32, capacity: UInt64)
    case usedIndexJumped(from: UInt16, to: UInt16, inFlight: Int)

    public var description: String {
        switch self {
        case .usedIDOutOfRange(let id, let n): "device returned id \(id), beyond queue size \(n)"
        case .usedIDNotInFlight(let id): "device returned id \(id), which the driver had not made available"
        case .usedLengthTooLong(let id, let l, let c): "device wrote \(l) bytes into chain \(id) of \(c) writable bytes"
        case .usedIndexJumped(let f, let t, let n):
            "device moved the used index from \(f) to \(t) with only \(n) chains in flight"
        }
    }
}

public enum VirtqueueError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Not enough free descriptors right now; reclaim used buffers and retry.
    case full(needed: Int, free: Int)
    case emptyChain
    case chainTooLong(segments: Int, maximum: Int)
    /// The queue is broken by an earlier device violation; reset it.
    case broken(DeviceViolation)

    public var description: String {
        switch self {
        case .full(let n, let f): "queue full: \(n) descriptors needed, \(f) free"
        case .emptyChain: "a chain needs at least one segment"
        case .chainTooLong(let s, let m): "chain of \(s) segments exceeds \(m)"
        case .broken(let v): "queue broken: \(v)"
        }
    }
}

/// The driver's record of one chain (indexed by head descriptor or buffer ID).
public struct ChainRecord: Sendable, Hashable {
    public var token: UInt64 = 0
    /// Descriptors the chain occupies in the ring (1 if indirect).
    public var descriptorCount: UInt16 = 0
    /// Sum of device-writable segment lengths: the most the device may report.
    public var writableCapacity: UInt64 = 0
    public var inFlight: Bool = false
    public init() {}
    public init(token: UInt64, descriptorCount: UInt16, writableCapacity: UInt64, inFlight: Bool) {
        self.token = token
        self.descriptorCount = descriptorCount
        self.writableCapacity = writableCapacity
        self.inFlight = inFlight
    }
}

/// Where each part of a queue lives inside its area. One function computes it
/// so the driver, the software device and a restoring process agree.
public struct QueueGeometry: Sendable, Hashable {
    public let layout: RingLayout
    public let size: Int
    public let indirectCapacity: Int
    public let descriptorsOffset: Int
    public let driverAreaOffset: Int
    public let deviceAreaOffset: Int
    public let indirectOffset: Int
    public let totalLength: Int

    public static let descriptorSize = 16
    public static let maxSize = 32768

    public init(layout: RingLayout, size: Int, indirectCapacity: Int = 0) {
        precondition(size >= 1 && size <= Self.maxSize, "queue size \(size) out of range")
        if layout == .split {
            precondition(size & (size - 1) == 0, "split queue size must be a power of two")
        }
        func align(_ v: Int, _ a: Int) -> Int { (v + a - 1) & ~(a - 1) }
        self.layout = layout
        self.size = size
        self.indirectCapacity = indirectCapacity
        descriptorsOffset = 0
        let descEnd = size * Self.descriptorSize
        switch layout {
        case .split:
            // §2.7: descriptor table (align 16), available ring (align 2), used ring (align 4).
            driverAreaOffset = descEnd
            let availLength = 6 + 2 * size
            deviceAreaOffset = align(driverAreaOffset + availLength, 64)
            let usedLength = 6 + 8 * size
            indirectOffset = align(deviceAreaOffset + usedLength, 64)
        case .packed:
            // §2.8.10: descriptor ring (align 16), driver and device event suppression (4 bytes, align 4).
            driverAreaOffset = descEnd
            deviceAreaOffset = descEnd + 4
            indirectOffset = align(descEnd + 8, 64)
        }
        totalLength = align(indirectOffset + size * indirectCapacity * Self.descriptorSize, 64)
    }

    /// Offset of the indirect table reserved for chain `id`.
    @inline(__always)
    public func indirectTableOffset(_ id: Int) -> Int { indirectOffset + id * indirectCapacity * Self.descriptorSize }

    public func addresses(in memory: RingMemory) -> QueueAddresses {
        QueueAddresses(descriptors: memory.deviceAddress(descriptorsOffset),
                       driverArea: memory.deviceAddress(driverAreaOffset),
                       deviceArea: memory.deviceAddress(deviceAreaOffset))
    }
}

/// Descriptor flags shared by both formats (§2.7.5, §2.8.1).
enum DescriptorFlag {
    static let next: UInt16 = 1
    static let write: UInt16 = 2
    static let indirect: UInt16 = 4
    /// Packed only (§2.8.1).
    static let avail: UInt16 = 1 << 7
    static let used: UInt16 = 1 << 15
}

/// Split-ring suppression flags (§2.7.7, §2.7.10).
enum SplitFlag {
    static let availNoInterrupt: UInt16 = 1
    static let usedNoNotify: UInt16 = 1
}

/// Packed-ring event suppression flags (§2.8.10).
enum PackedEventFlag {
    static let enable: UInt16 = 0
    static let disable: UInt16 = 1
    static let desc: UInt16 = 2
}
