import VirtioCore
import VirtiodPluginRuntime

/// What the disk allows, from struct virtio_blk_config (virtio 1.2 §5.2.4)
/// and the negotiated features: device-written, so every value is bounded
/// before it sizes anything.
struct BlockLimits: Codable, Equatable {
    var capacitySectors: UInt64
    var readOnly: Bool
    var flush: Bool
    var discard: Bool
    var writeZeroes: Bool
    /// Largest data segment (VIRTIO_BLK_F_SIZE_MAX), if any.
    var sizeMax: Int?
    /// Most data segments per request (VIRTIO_BLK_F_SEG_MAX), if any.
    var segMax: Int?
    var maxDiscardSectors: UInt32
    var maxWriteZeroesSectors: UInt32

    static let sectorSize = 512

    static func read(_ transport: any Transport, negotiated: UInt64) throws -> BlockLimits {
        let f = BlockFeatures(rawValue: negotiated)
        func u32(_ offset: Int) throws -> UInt32 { transport.configSize >= offset + 4 ? try transport.readConfig(UInt32.self, at: offset) : 0 }
        let sizeMax = f.contains(.sizeMax) ? Int(try u32(8)) : 0
        let segMax = f.contains(.segMax) ? Int(try u32(12)) : 0
        let discardSectors = f.contains(.discard) ? try u32(36) : 0
        let zeroSectors = f.contains(.writeZeroes) ? try u32(48) : 0
        return BlockLimits(
            capacitySectors: min(try transport.readConfig(UInt64.self, at: 0), UInt64.max / 512),
            readOnly: f.contains(.readOnly), flush: f.contains(.flush),
            discard: discardSectors > 0, writeZeroes: zeroSectors > 0,
            // A device saying 0 says nothing; below a sector it cannot be meant.
            sizeMax: sizeMax > 0 ? max(sizeMax, sectorSize) : nil, segMax: segMax > 0 ? segMax : nil,
            maxDiscardSectors: discardSectors, maxWriteZeroesSectors: zeroSectors)
    }

    var capacityBytes: UInt64 { capacitySectors * 512 }

    /// Bytes one read or write request to the device carries: a slot's
    /// data, fewer if seg_max × size_max (and the chain's room for data
    /// segments) say so; whole sectors.
    func partBytes(slotData: Int, maxDataSegments: Int) -> Int {
        let segments = min(segMax ?? maxDataSegments, maxDataSegments)
        let perSegment = sizeMax ?? slotData
        let bytes = min(slotData, perSegment.multipliedReportingOverflow(by: max(1, segments)).partialValue)
        return max(Self.sectorSize, bytes / Self.sectorSize * Self.sectorSize)
    }

    /// Data segment lengths for `length` bytes (each at most size_max).
    func segments(_ length: Int) -> [Int] {
        let step = sizeMax ?? length
        return stride(from: 0, to: length, by: max(1, step)).map { min(step, length - $0) }
    }
}

/// The request queues a disk is driven with: as many as the device has
/// (F_MQ: num_queues, virtio 1.2 §5.2.2; device-written, so at least 1) and
/// its endpoint serves (NBD connections, ublk queues), at least 1.
func blockRequestQueues(negotiated: UInt64, device: AttachedDevice, endpointQueues: Int) throws -> [(index: Int, name: String)] {
    var deviceQueues = 1
    if BlockFeatures(rawValue: negotiated).contains(.multiqueue) {
        deviceQueues = max(1, Int(try device.transport.readConfig(UInt16.self, at: 34)))
    }
    let n = max(1, min(deviceQueues, endpointQueues))
    return (0..<n).map { ($0, "requestq\($0)") }
}

/// What both exports (NBD, ublk) work with once features are negotiated:
/// the disk's limits, the bytes one device request carries, and whether
/// chains go through indirect tables.
struct BlockRequestShape {
    /// Data segments a chain may have: the indirect table holds 16 descriptors (header and status take 2).
    static let maxDataSegments = 14

    var limits: BlockLimits
    var partBytes: Int
    var indirect: Bool

    /// `slotData`: the data bytes of the queues' slots.
    init(_ driver: DeviceDriver, slotData: Int = BlockSlot.dataSize) throws {
        limits = try BlockLimits.read(driver.transport, negotiated: driver.negotiated)
        indirect = TransportFeatures(rawValue: driver.negotiated).contains(.indirectDescriptors)
        // Without indirect tables a chain takes ring slots directly: keep it small.
        partBytes = limits.partBytes(slotData: slotData, maxDataSegments: indirect ? Self.maxDataSegments : 4)
    }

    func context(_ driver: DeviceDriver) -> DriverBlockContext {
        DriverBlockContext(driver: driver, limits: limits, partBytes: partBytes, indirect: indirect)
    }

    /// The config changed (a config interrupt, §5.2.4): follow the capacity
    /// for range checks (the supervisor resizes the exported disk itself).
    mutating func followCapacity(_ driver: DeviceDriver) {
        guard let new = try? BlockLimits.read(driver.transport, negotiated: driver.negotiated),
              new.capacitySectors != limits.capacitySectors else { return }
        PluginLog.notice("block \(driver.device.info.address): capacity now \(new.capacityBytes) bytes (was \(limits.capacityBytes))")
        limits.capacitySectors = new.capacitySectors
    }
}
