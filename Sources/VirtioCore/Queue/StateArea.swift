/// A slot in a DMA region where one process leaves a hand-over record for
/// the next (a `QueueStateCodec` record, plus one word of the owner's own,
/// e.g. its next sequence number). Layout, little-endian:
///
///     word u64 @0 | record length u32 @8 | reserved u32 @12 | record @16
///
/// The area is shared memory: the length read back is checked against the
/// area before any byte is copied, and the record itself is checked by its
/// codec (magic, version, checksum).
public struct StateArea: Sendable {
    public let region: DMARegion
    public let slice: DMASlice
    static let headerLength = 16

    public init(region: DMARegion, slice: DMASlice) {
        precondition(slice.length > Self.headerLength, "state area of \(slice.length) bytes is too small")
        self.region = region
        self.slice = slice
    }

    public var capacity: Int { slice.length - Self.headerLength }

    public func store(_ record: [UInt8], word: UInt64) throws(QueueStateError) {
        guard record.count <= capacity else { throw .truncated(needed: record.count, have: capacity) }
        // SAFETY: `region.pointer` checks the slice lies in the region; the
        // copy is at most `capacity` bytes after the 16-byte header.
        let p = region.pointer(slice)
        p.storeBytes(of: word.littleEndian, as: UInt64.self)
        p.storeBytes(of: UInt32(record.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        record.withUnsafeBytes { (p + Self.headerLength).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    public func load() throws(QueueStateError) -> (record: [UInt8], word: UInt64) {
        // SAFETY: as in `store`; the length comes from shared memory and is
        // checked against `capacity` before it bounds the copy.
        let p = region.pointer(slice)
        let word = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
        let length = Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        guard length <= capacity else { throw .truncated(needed: length, have: capacity) }
        let record = [UInt8](UnsafeRawBufferPointer(start: p + Self.headerLength, count: length))
        return (record, word)
    }
}
