import Foundation
import Testing
import VirtioCore
@testable import VirtioSystem
import VirtiodProtocol

/// The hand-over area in the state memfd: what a plugin leaves for its
/// successor must come back exactly, and anything else must be refused, not
/// misread (issue: versioned plugin state).
@Suite struct HandoverRecordTests {
    func area() throws -> (SharedMemory, HandoverArea) {
        let m = try SharedMemory(name: "handover-test", size: 1 << 20)
        return (m, HandoverArea(region: m.region(deviceBase: 0)))
    }

    func record(_ size: Int = 8) throws -> HandoverRecord {
        let (_, s) = try QueueStateTests().liveState(.split)
        return HandoverRecord(plugin: "net", pluginVersion: "test", address: "0000:00:03.0", negotiated: 0x1_0000_0020,
                              allocatorCursor: 4096, queues: [.init(index: 0, name: "receiveq0", maxSize: 256, vector: 1,
                                                                    state: Data(QueueStateCodec.encode(s)))],
                              identity: ["serial": .text("x")], stateVersion: 1, data: Data([1, 2, 3]),
                              reason: "reload", savedAt: 1)
    }

    @Test func roundTripsAndMarksSaved() throws {
        let (m, a) = try area()
        #expect(!a.isSaved)
        #expect(throws: HandoverError.self) { try a.load() }
        try a.save(try record())
        #expect(a.isSaved)
        let back = try a.load()
        #expect(back.plugin == "net" && back.negotiated == 0x1_0000_0020 && back.data == Data([1, 2, 3]))
        #expect(try QueueStateCodec.decode(back.queues[0].state) == QueueStateCodec.decode(try record().queues[0].state))
        // A second process mapping the same memfd reads the same record.
        let other = try SharedMemory(mapping: m.fd, size: m.size, ownsFD: false)
        #expect(try HandoverArea(region: other.region(deviceBase: 0)).load().address == "0000:00:03.0")
        a.markLive()
        #expect(!a.isSaved)
        #expect(throws: HandoverError.self) { try a.load() }
    }

    @Test func damagedOrNewerRecordsAreRefused() throws {
        let (m, a) = try area()
        try a.save(try record())
        // One flipped byte in the JSON: checksum.
        let p = m.base.advanced(by: 16 + 16 + 10)
        p.storeBytes(of: p.load(as: UInt8.self) ^ 0x20, as: UInt8.self)
        #expect { try a.load() } throws: { "\($0)".contains("checksum") }
        // A length beyond the area: refused before any copy.
        try a.save(try record())
        m.base.storeBytes(of: UInt32(5 << 20).littleEndian, toByteOffset: 8, as: UInt32.self)
        #expect(throws: QueueStateError.self) { try a.load() }
        // A newer envelope format is refused by number.
        var newer = try record()
        newer.format = 2
        try a.save(newer)
        #expect { try a.load() } throws: { "\($0)".contains("format 2") }
        // A record from before the format word (0 there) is still read; an
        // unknown word is refused by number.
        try a.save(try record())
        m.base.storeBytes(of: UInt32(0), toByteOffset: 16 + 12, as: UInt32.self)
        #expect(try a.load().plugin == "net")
        m.base.storeBytes(of: UInt32(7).littleEndian, toByteOffset: 16 + 12, as: UInt32.self)
        #expect { try a.load() } throws: { "\($0)".contains("format 7") }
        // A known word over JSON of another format (the word is outside the
        // checksum): refused as disagreeing, not read as the word says.
        try a.save(newer)
        m.base.storeBytes(of: UInt32(HandoverRecord.currentFormat).littleEndian, toByteOffset: 16 + 12, as: UInt32.self)
        #expect { try a.load() } throws: { "\($0)".contains("JSON says 2") }
    }

    @Test func poolTakenOverKeepsTheDevicesBuffers() throws {
        let area = DMASlice(offset: 0, length: 8 * 512)
        var pool = try #require(DMABufferPool(area: area, bufferSize: 512, segmentSize: nil, inUse: [1, 5, 6]))
        #expect(pool.freeCount == 5)
        var free: Set<Int> = []
        while let i = pool.take() { free.insert(i) }
        #expect(free == [0, 2, 3, 4, 7])
        #expect(DMABufferPool(area: area, bufferSize: 512, segmentSize: nil, inUse: [8]) == nil)
        #expect(DMABufferPool(area: area, bufferSize: 512, segmentSize: nil, inUse: [2, 2]) == nil)
    }
}

@Suite struct SmallHelperTests {
    @Test func slicesOverlapOnlyWhenTheyShareAByte() {
        let a = DMASlice(offset: 4096, length: 4096)
        #expect(a.overlaps(DMASlice(offset: 8191, length: 1)))
        #expect(a.overlaps(DMASlice(offset: 0, length: 4097)))
        #expect(!a.overlaps(DMASlice(offset: 8192, length: 10)))
        #expect(!a.overlaps(DMASlice(offset: 0, length: 4096)))
    }

    /// Slices named by a hand-over record may be anything: arithmetic on
    /// them never traps, and an impossible one overlaps everything (refused).
    @Test func impossibleSlicesOverlapEverythingWithoutTrapping() {
        let a = DMASlice(offset: 4096, length: 4096)
        let huge = DMASlice(offset: Int.max - 10, length: 100)
        #expect(huge.end == nil && huge.overlaps(a) && a.overlaps(huge))
        #expect(DMASlice(offset: -5, length: 10).end == nil)
        #expect(DMASlice(offset: 10, length: -1).overlaps(a))
        #expect(a.end == 8192)
    }

    @Test func textFilesAreReadTrimmedAndByField() throws {
        let path = "/tmp/virtiod-textfile-\(getpid())"
        defer { unlink(path) }
        try "pos:\t0\nflags:\t02004002\niff:\tvtnet0\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(TextFile.field("iff", in: path) == "vtnet0")
        #expect(TextFile.field("missing", in: path) == nil)
        try "  0x1003\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(TextFile.read(path) == "0x1003")
        #expect(TextFile.read(path + ".absent") == nil)
    }

    @Test func netlinkRecordsStopAtALengthThatDoesNotFit() {
        // Two rtattrs (IFA_ADDRESS, 4-byte value; then one claiming 64 bytes of 8 left).
        var w = ByteWriter()
        w.u16(8); w.u16(1); w.u8(10); w.u8(77); w.u8(0); w.u8(1)
        w.u16(64); w.u16(2); w.u32(0)
        var seen: [(UInt16, [UInt8])] = []
        NetlinkParser.forEachAttribute(w.bytes[...]) { seen.append(($0, Array($1))) }
        #expect(seen.count == 1 && seen[0].0 == 1 && seen[0].1 == [10, 77, 0, 1])
        // A netlink message whose length is below its own header is not read.
        var m = ByteWriter()
        m.u32(8); m.u16(16); m.zeros(10)
        var messages = 0
        NetlinkParser.forEachMessage(m.bytes[...]) { _, _ in messages += 1 }
        #expect(messages == 0)
    }
}
