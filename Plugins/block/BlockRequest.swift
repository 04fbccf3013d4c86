import VirtioCore

/// virtio-blk request types and status values (virtio 1.2 §5.2.6).
enum BlockRequestType: UInt32 {
    case read = 0, write = 1, flush = 4, getID = 8, discard = 11, writeZeroes = 13
}

enum BlockStatus {
    static let ok: UInt8 = 0, ioError: UInt8 = 1, unsupported: UInt8 = 2
}

/// One NBD request being served: read from the connection, split into
/// device requests ("parts", one slot each), answered once every part is
/// back. Travels in the hand-over record, so every field is checked when
/// a successor reads it (`BlockQueue.restore`).
struct PendingRequest: Codable, Equatable {
    var handle: UInt64
    var command: NBDWire.Command
    var offset: UInt64
    var length: UInt32
    /// A write of zeroes, sent as WRITE_ZEROES (the kernel's nbd has no such command).
    var zeroes = false
    /// The slot of each part, in part order.
    var slots: [Int] = []
    /// Parts added to the queue so far (in order).
    var submitted = 0
    /// Parts added and not yet returned by the device.
    var outstanding = 0
    /// Write payload read from the connection so far.
    var received = 0
    /// The worst status a returned part had.
    var status = BlockStatus.ok
    /// Its connection closed: no reply; the slots go when the device has
    /// returned every part it holds (nil in an older plugin's record: false).
    var connectionLost: Bool?

    var isDone: Bool { submitted == slots.count && outstanding == 0 }

    /// Where each part lies: its first sector, and its bytes within the
    /// request. Reads and writes are cut at `partBytes` (a slot's worth);
    /// discards and zeroing at what the device takes per request; a flush
    /// is one part with no data.
    func parts(partBytes: Int, limits: BlockLimits) -> [(sector: UInt64, start: Int, length: Int)] {
        let step: Int
        switch command {
        case .read, .write: step = partBytes
        case .trim: step = Int(limits.maxDiscardSectors) * BlockLimits.sectorSize
        case .writeZeroes: step = Int(limits.maxWriteZeroesSectors) * BlockLimits.sectorSize
        case .flush, .disconnect: return [(0, 0, 0)]
        }
        let total = Int(length)
        guard step > 0, total > 0 else { return [] }
        return stride(from: 0, to: total, by: step).map { (offset / 512 + UInt64($0 / 512), $0, min(step, total - $0)) }
    }

    /// The device request type of every part.
    var deviceType: BlockRequestType {
        switch command {
        case .read: .read
        case .write: zeroes ? .writeZeroes : .write
        case .flush, .disconnect: .flush
        case .trim: .discard
        case .writeZeroes: .writeZeroes
        }
    }

    /// The NBD error for the reply.
    var replyError: UInt32 {
        switch status {
        case BlockStatus.ok: 0
        case BlockStatus.unsupported: NBDWire.enotsup
        default: NBDWire.eio
        }
    }
}

/// A reply waiting for room on its connection: the header, then (a
/// successful read's) data from the request's slots, which stay taken until
/// it is sent. Travels in the hand-over record with what was sent of it.
struct OutgoingReply: Codable, Equatable {
    var handle: UInt64
    var error: UInt32
    /// All the request's slots (freed once sent).
    var slots: [Int] = []
    /// Data bytes sent from each of the first slots (a read's parts).
    var lengths: [Int] = []
    /// Bytes of header and data already sent.
    var sent = 0

    var total: Int { NBDWire.replySize + lengths.reduce(0, +) }
}

/// A slot of a queue's pool: `dataSize` bytes of data, then the request
/// header (16 bytes: le32 type, le32 reserved, le64 sector), a discard /
/// write-zeroes segment (16 bytes: le64 sector, le32 sectors, le32 flags)
/// and the status byte the device writes.
///
/// The head sits in the last 64 bytes of whatever size the slot is: NBD
/// queues use `dataSize` (a request is cut into parts of a slot each), ublk
/// queues `ublkDataSize` (a tag's whole request in one slot).
enum BlockSlot {
    static let dataSize = 64 << 10
    static let ublkDataSize = 128 << 10
    static let headSize = 64
    static let headerOffset = dataSize
    static let segmentOffset = dataSize + 16
    static let statusOffset = dataSize + 32
    static let size = dataSize + headSize

    static func size(data: Int) -> Int { data + headSize }
    /// Where a slot's request header, discard segment and status byte lie within it.
    static func header(_ slot: DMASlice) -> Int { slot.length - headSize }
    static func segment(_ slot: DMASlice) -> Int { slot.length - headSize + 16 }
    static func status(_ slot: DMASlice) -> Int { slot.length - headSize + 32 }
}
