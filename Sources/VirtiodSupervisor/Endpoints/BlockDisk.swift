import VirtioCore
import VirtioPCI
import VirtiodProtocol

/// A claimed virtio-blk device's disk as the endpoints that export it
/// (`nbd`, `ublk`) need it, read from the device's config (virtio 1.2
/// §5.2.4) and the features its plugin negotiated. Device-written: bounded
/// before use.
struct BlockDisk: Equatable {
    var sectors: UInt64
    var blockSize: UInt64 = 512
    var readOnly = false
    var flush = false
    var maxDiscardSectors: UInt32 = 0
    var maxWriteZeroesSectors: UInt32 = 0
    /// Discard granularity in bytes: discard_sector_alignment × 512 when the
    /// device gives one (as Linux's virtio_blk reads it), else the block size.
    var discardGranularity: UInt32 = 512

    var sizeBytes: UInt64 { sectors * 512 }
    var discard: Bool { maxDiscardSectors > 0 }
    var writeZeroes: Bool { maxWriteZeroesSectors > 0 }

    /// What the device says now.
    static func read(_ device: ClaimedDevice) throws -> BlockDisk {
        let t = device.transport
        let negotiated = BlockFeatures(rawValue: t.readDriverFeatures())
        let sectors = try t.readConfig(UInt64.self, at: 0)
        guard sectors <= UInt64.max / 512 else { throw ClaimError.setup("the disk reports \(sectors) sectors") }
        func u32(_ offset: Int) throws -> UInt32 { t.configSize >= offset + 4 ? try t.readConfig(UInt32.self, at: offset) : 0 }
        var disk = BlockDisk(sectors: sectors)
        if negotiated.contains(.blockSize) {
            let b = UInt64(try u32(20))
            if b >= 512, b <= 4096, b & (b - 1) == 0 { disk.blockSize = b }
        }
        disk.readOnly = negotiated.contains(.readOnly)
        disk.flush = negotiated.contains(.flush)
        disk.discardGranularity = UInt32(disk.blockSize)
        if negotiated.contains(.discard) {
            disk.maxDiscardSectors = try u32(36)
            // Device-written: a power of two from the block size to 1 GiB, else ignored.
            let alignment = UInt64(try u32(44)) * 512
            if alignment >= disk.blockSize, alignment <= 1 << 30, alignment & (alignment - 1) == 0 {
                disk.discardGranularity = UInt32(alignment)
            }
        }
        if negotiated.contains(.writeZeroes) { disk.maxWriteZeroesSectors = try u32(48) }
        return disk
    }

    /// Request queues an export gets (F_MQ: num_queues, at most `limit`).
    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64, limit: Int) -> Int {
        guard offered & BlockFeatures.multiqueue.rawValue != 0, transport.configSize >= 36,
              let n = try? transport.readConfig(UInt16.self, at: 34) else { return 1 }
        return max(1, min(limit, Int(n)))
    }

    /// "virtiod-" + the serial as udev may use it in a path
    /// ([A-Za-z0-9._-]), else the PCI address: the disk's stable name,
    /// /dev/disk/by-id/virtiod-SERIAL.
    static func stableName(serial: String?, address: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if let serial, !serial.isEmpty, serial.count <= 20, serial.allSatisfy(allowed.contains) { return "virtiod-" + serial }
        return "virtiod-" + ClaimedDevice.storeSlug(address)
    }

    /// The serial in a plugin's report (GET_ID, which only a driver can ask).
    static func serial(_ config: [String: ConfigValue]) -> String? {
        if case .text(let s) = config["serial"] { s } else { nil }
    }
}
