import VirtioCore

/// One resolved segment of a chain the driver made available.
public struct DeviceSegment: Sendable, Hashable {
    public var slice: DMASlice
    public var isWritable: Bool
}

/// A chain popped from the available side. Reused between pops so the device
/// loop does not allocate: its storage only grows.
public struct DeviceChain: Sendable {
    /// Head descriptor index (split) or buffer ID (packed): what goes back in the used entry.
    public var id: UInt16 = 0
    /// Ring slots the chain occupies (packed: how far the used position moves).
    public var descriptorCount: Int = 0
    private var storage: [DeviceSegment]
    public private(set) var count = 0

    public init() { storage = Array(repeating: DeviceSegment(slice: DMASlice(offset: 0, length: 0), isWritable: false), count: 16) }

    /// The chain's segments, in order.
    public var segments: ArraySlice<DeviceSegment> { storage[0..<count] }

    @inline(__always)
    mutating func removeAll() { count = 0 }

    @inline(__always)
    mutating func append(_ s: DeviceSegment) {
        if count == storage.count { storage += storage }
        storage[count] = s
        count += 1
    }

    public var writableCapacity: Int { segments.reduce(0) { $0 + ($1.isWritable ? $1.slice.length : 0) } }
    public var readableLength: Int { segments.reduce(0) { $0 + ($1.isWritable ? 0 : $1.slice.length) } }
}

/// Something the driver wrote that a device must refuse (virtio 1.2 §2.7.5.1
/// and §2.8 device requirements). The software device stops the queue; a
/// real device would set DEVICE_NEEDS_RESET.
public enum DriverViolation: Error, Sendable, Hashable, CustomStringConvertible {
    case availIndexJumped(from: UInt16, to: UInt16)
    case headOutOfRange(UInt16)
    case chainTooLong
    case addressOutsideMemory(address: UInt64, length: UInt32)
    case badIndirectTable(length: UInt32)
    case nestedIndirect

    public var description: String {
        switch self {
        case .availIndexJumped(let f, let t): "driver moved avail idx from \(f) to \(t)"
        case .headOutOfRange(let h): "driver made descriptor \(h) available, beyond the queue"
        case .chainTooLong: "descriptor chain longer than the queue (loop?)"
        case .addressOutsideMemory(let a, let l): "descriptor 0x\(String(a, radix: 16))+\(l) outside DMA memory"
        case .badIndirectTable(let l): "indirect table of \(l) bytes"
        case .nestedIndirect: "indirect descriptor inside an indirect table"
        }
    }
}
