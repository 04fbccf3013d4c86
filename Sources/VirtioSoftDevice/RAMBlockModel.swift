import VirtioCore

/// A virtio-blk device (virtio 1.2 §5.2) backed by memory: IN, OUT, FLUSH,
/// GET_ID, and DISCARD / WRITE_ZEROES (both zero the range) when asked for
/// in `features`, on one request queue. The request header and status byte
/// may be split across segments any way the driver likes (§2.6.4).
public final class RAMBlockModel: SoftDeviceModel, @unchecked Sendable {
    // SAFETY (Sendable): `service` runs on one thread at a time (see SoftDevice).
    public enum RequestType: UInt32 { case read = 0, write = 1, flush = 4, getID = 8, discard = 11, writeZeroes = 13 }
    public enum Status: UInt8 { case ok = 0, ioError = 1, unsupported = 2 }
    public static let sectorSize = 512

    public let deviceType = DeviceType.block
    public let deviceFeatures: UInt64
    public let queueSizes: [Int]
    public private(set) var storage: [UInt8]
    public let serial: String
    private var chain = DeviceChain()
    /// Requests served, by type (for tests).
    public private(set) var served: [RequestType: Int] = [:]
    /// Most sectors one DISCARD or WRITE_ZEROES may cover (config).
    public static let maxZeroSectors: UInt32 = 256

    public init(sectors: Int, features: UInt64, queueSize: Int = 128, serial: String = "soft-ram-0") {
        self.storage = [UInt8](repeating: 0, count: sectors * Self.sectorSize)
        self.deviceFeatures = features | BlockFeatures.segMax.rawValue | BlockFeatures.blockSize.rawValue
            | BlockFeatures.flush.rawValue
        self.queueSizes = [queueSize]
        self.serial = serial
    }

    /// capacity u64 @0, size_max u32 @8, seg_max u32 @12, geometry @16, blk_size u32 @20,
    /// max_discard_sectors u32 @36, max_discard_seg @40, max_write_zeroes_sectors @48,
    /// max_write_zeroes_seg @52 (§5.2.4).
    public func config() -> [UInt8] {
        var c = [UInt8](repeating: 0, count: 60)
        func put(_ v: UInt64, at o: Int, _ n: Int) { for i in 0..<n { c[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        put(UInt64(storage.count / Self.sectorSize), at: 0, 8)
        put(UInt64(queueSizes[0] - 2), at: 12, 4)
        put(UInt64(Self.sectorSize), at: 20, 4)
        for o in [36, 48] { put(UInt64(Self.maxZeroSectors), at: o, 4) }
        for o in [40, 52] { put(1, at: o, 4) }
        return c
    }

    public func service(queue index: Int, queues: [DeviceQueue?]) -> [Int] {
        guard let q = queues[index] else { return [] }
        var any = false
        while q.pop(into: &chain) {
            q.push(chain, length: UInt32(handle(chain, q)))
            any = true
        }
        return any && q.commit() ? [index] : []
    }

    /// Serve one request; returns the bytes written to the driver.
    func handle(_ c: DeviceChain, _ q: DeviceQueue) -> Int {
        let writable = c.writableCapacity
        guard writable >= 1 else { return 0 } // nowhere to put a status: drop
        let header = q.readBytes(c, count: 16)
        let dataOut = c.readableLength - 16
        let dataIn = writable - 1
        func finish(_ s: Status, written: Int = 0) -> Int {
            q.write(c, bytes: [s.rawValue], skipping: dataIn)
            return written + 1
        }
        guard header.count == 16 else { return finish(.ioError) }
        let type = header[0..<4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let sector = header[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        if let t = RequestType(rawValue: type) { served[t, default: 0] += 1 }
        switch RequestType(rawValue: type) {
        case .read:
            guard let start = range(sector, dataIn) else { return finish(.ioError) }
            let n = storage.withUnsafeBytes { q.write(c, from: UnsafeRawBufferPointer(rebasing: $0[start..<start + dataIn])) }
            return finish(.ok, written: n)
        case .write:
            guard let start = range(sector, dataOut) else { return finish(.ioError) }
            storage.withUnsafeMutableBytes { buf in
                _ = q.read(c, into: UnsafeMutableRawBufferPointer(rebasing: buf[start..<start + dataOut]), skipping: 16)
            }
            return finish(.ok)
        case .flush:
            return finish(.ok)
        case .getID:
            var id = Array(serial.utf8.prefix(20))
            id += [UInt8](repeating: 0, count: 20 - id.count)
            return finish(.ok, written: q.write(c, bytes: Array(id.prefix(dataIn))))
        case .discard, .writeZeroes:
            let feature = type == RequestType.discard.rawValue ? BlockFeatures.discard : BlockFeatures.writeZeroes
            guard deviceFeatures & feature.rawValue != 0 else { return finish(.unsupported) }
            // One segment: le64 sector, le32 num_sectors, le32 flags.
            let segment = q.readBytes(c, count: 32).dropFirst(16)
            guard segment.count == 16 else { return finish(.ioError) }
            let first = segment.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let count = segment.dropFirst(8).prefix(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            guard count <= Self.maxZeroSectors, let start = range(first, Int(count) * Self.sectorSize) else { return finish(.ioError) }
            storage.replaceSubrange(start..<start + Int(count) * Self.sectorSize, with: repeatElement(0, count: Int(count) * Self.sectorSize))
            return finish(.ok)
        case nil:
            return finish(.unsupported)
        }
    }

    func range(_ sector: UInt64, _ length: Int) -> Int? {
        guard length >= 0, length % Self.sectorSize == 0, sector < UInt64(storage.count / Self.sectorSize) else { return nil }
        let start = Int(sector) * Self.sectorSize
        return start + length <= storage.count ? start : nil
    }
}
