import FoundationEssentials
import VirtioCore

/// What a plugin leaves for its successor when it stops without resetting
/// its device (hot reload, a restart of virtiod): the negotiated features,
/// every queue's `QueueState` (virtio 1.2 §2.7/§2.8 driver-side bookkeeping)
/// and the data path's own state. Rings and buffers stay where they are, in
/// the DMA memfd; this record says how to read them.
///
/// Versioned twice: `format` is this envelope (a reader rejects formats it
/// does not know), `stateVersion` is the data path's own layout (a plugin
/// reads the versions it knows and rejects newer ones, so it never misreads).
public struct HandoverRecord: Codable, Sendable {
    public static let currentFormat = 1

    public struct Queue: Codable, Sendable {
        public var index: Int
        public var name: String
        public var maxSize: Int
        public var vector: UInt16
        /// `QueueStateCodec` bytes (checked again on decode).
        public var state: Data
        public init(index: Int, name: String, maxSize: Int, vector: UInt16, state: Data) {
            self.index = index
            self.name = name
            self.maxSize = maxSize
            self.vector = vector
            self.state = state
        }
    }

    public var format: Int
    public var plugin: String
    public var pluginVersion: String
    public var address: String
    public var negotiated: UInt64
    /// DMA allocator cursor when the record was written (everything below is in use).
    public var allocatorCursor: Int
    /// Offset of the driver's request scratch page, if it has one.
    public var scratch: Int?
    public var queues: [Queue]
    /// Facts learned once (e.g. a disk's serial) that a successor reports without asking again.
    public var identity: [String: ConfigValue]
    /// The data path's state, in its own `stateVersion`.
    public var stateVersion: Int
    public var data: Data?
    /// Why it was written: "reload", "SIGTERM", "supervisor gone".
    public var reason: String
    public var savedAt: Double

    public init(plugin: String, pluginVersion: String, address: String, negotiated: UInt64, allocatorCursor: Int,
                queues: [Queue], identity: [String: ConfigValue], stateVersion: Int, data: Data?, reason: String,
                savedAt: Double) {
        self.format = Self.currentFormat
        self.plugin = plugin
        self.pluginVersion = pluginVersion
        self.address = address
        self.negotiated = negotiated
        self.allocatorCursor = allocatorCursor
        self.queues = queues
        self.identity = identity
        self.stateVersion = stateVersion
        self.data = data
        self.reason = reason
        self.savedAt = savedAt
    }
}

public enum HandoverError: Error, Sendable, CustomStringConvertible {
    case empty
    case corrupt(String)
    case unsupportedFormat(Int)

    public var description: String {
        switch self {
        case .empty: "no hand-over record (the previous plugin did not stop cleanly)"
        case .corrupt(let why): "hand-over record unusable: \(why)"
        case .unsupportedFormat(let f): "hand-over record format \(f) is not one this build reads (it reads \(HandoverRecord.currentFormat))"
        }
    }
}

/// The hand-over area: a `StateArea` in the state memfd the supervisor holds
/// for each claimed device. Its word says whether a record is waiting
/// (`saved`) or the device is driven live (`live`: a crash leaves no record,
/// so the device must be reset). Record bytes: magic "VHO1" u32 | length u32 |
/// FNV-1a u32 | format u32 | JSON of `HandoverRecord`. The format word lets
/// a reader refuse a newer record without parsing its JSON; records written
/// before it existed have 0 there, and their format is read from the JSON.
public struct HandoverArea: Sendable {
    public static let saved: UInt64 = 0x5341_5645_4421 // "SAVED!"
    public static let live: UInt64 = 0
    static let magic: UInt32 = 0x314F_4856 // "VHO1"
    public let area: StateArea

    public init(region: DMARegion) {
        area = StateArea(region: region, slice: DMASlice(offset: 0, length: region.size))
    }

    /// True when a cleanly stopped plugin left a record.
    public var isSaved: Bool { (try? area.load().word) == Self.saved }

    public func save(_ record: HandoverRecord) throws {
        let json = Array(try JSONEncoder().encode(record))
        var w = ByteWriter()
        w.u32(Self.magic); w.u32(UInt32(json.count)); w.u32(QueueStateCodec.fnv1a(json))
        w.u32(UInt32(clamping: max(0, record.format)))
        try area.store(w.bytes + json, word: Self.saved)
    }

    /// The waiting record; throws if there is none or it cannot be trusted.
    public func load() throws -> HandoverRecord {
        let (bytes, word) = try area.load()
        guard word == Self.saved else { throw HandoverError.empty }
        guard bytes.count >= 16 else { throw HandoverError.corrupt("\(bytes.count) bytes") }
        var header = ByteReader(bytes: bytes)
        guard header.u32() == Self.magic else { throw HandoverError.corrupt("bad magic") }
        let length = Int(header.u32())
        let sum = header.u32()
        let format = Int(header.u32())
        guard length == bytes.count - 16 else { throw HandoverError.corrupt("length \(length) of \(bytes.count - 16)") }
        let body = Array(bytes[16...])
        guard QueueStateCodec.fnv1a(body) == sum else { throw HandoverError.corrupt("checksum mismatch") }
        let json = Data(body)
        // The format first: a newer record is refused by number, not misread.
        if format != 0 {
            guard format == HandoverRecord.currentFormat else { throw HandoverError.unsupportedFormat(format) }
        } else {
            struct Envelope: Decodable { var format: Int }
            guard let envelope = try? JSONDecoder().decode(Envelope.self, from: json) else {
                throw HandoverError.corrupt("no format field")
            }
            guard envelope.format == HandoverRecord.currentFormat else { throw HandoverError.unsupportedFormat(envelope.format) }
        }
        let record: HandoverRecord
        do { record = try JSONDecoder().decode(HandoverRecord.self, from: json) } catch {
            throw HandoverError.corrupt("\(error)")
        }
        // The word and the JSON must agree: the checksum covers the JSON only.
        guard format == 0 || record.format == format else {
            throw HandoverError.corrupt("format word \(format), JSON says \(record.format)")
        }
        return record
    }

    /// Mark the device as driven live (a record, if any, is no longer valid).
    public func markLive() {
        try? area.store([], word: Self.live)
    }
}
