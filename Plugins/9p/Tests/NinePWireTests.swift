import Testing
import VirtioCore
@testable import virtiod_9p

/// 9P2000.L messages byte by byte, and replies a device could lie in.
@Suite struct NinePWireTests {
    @Test func twalkAndTversionBytes() {
        let walk = NinePWire.Request.walk(fid: 1, newFid: 2, names: [Array("ab".utf8)]).encode(tag: 3)
        #expect(walk == [21, 0, 0, 0, 110, 3, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0, 97, 98])
        let version = NinePWire.Request.version(msize: 8192).encode(tag: 0)
        #expect(version.prefix(7) == [21, 0, 0, 0, 100, 0xff, 0xff] && version.count == 21)
        // A write's size counts the data the caller places after the header.
        let write = NinePWire.Request.write(fid: 1, offset: 0, count: 100).encode(tag: 0)
        #expect(write.count == NinePWire.writeHeaderSize && write[0] == UInt8(NinePWire.writeHeaderSize + 100))
    }

    @Test func repliesAreCheckedBeforeUse() throws {
        var m = NinePWire.Message(.rlerror, tag: 0)
        m.u32(2)
        #expect(throws: NinePError.server(2)) { try NinePWire.body(m.finish(), expecting: .rwalk) }
        // An errno no kernel has is EIO.
        var big = NinePWire.Message(.rlerror, tag: 0)
        big.u32(70000)
        #expect(throws: NinePError.server(5)) { try NinePWire.body(big.finish(), expecting: .rwalk) }
        // A size beyond what was written, a type that was not due, a short body.
        var lying = NinePWire.Message(.rwalk, tag: 0)
        lying.u16(1)
        var bytes = lying.finish()
        bytes[0] = 200
        #expect(throws: NinePError.self) { try NinePWire.header(bytes) }
        #expect(throws: NinePError.self) { try NinePWire.body(lying.finish(), expecting: .rgetattr) }
        var r = try NinePWire.body(lying.finish(), expecting: .rwalk)
        #expect(try r.u16() == 1)
        #expect(throws: NinePError.self) { try r.qid() }
        // A readdir whose count runs past the message.
        var dir = NinePWire.Message(.rreaddir, tag: 0)
        dir.u32(1000)
        var d = try NinePWire.body(dir.finish(), expecting: .rreaddir)
        #expect(throws: NinePError.self) { try NinePWire.directoryEntries(&d) }
    }

    /// An Rread whose data stayed in the slot: only its header and count
    /// were copied; the size the device claims is held against what it wrote.
    @Test func readDataLeftInDMAMemory() throws {
        var m = NinePWire.Message(.rread, tag: 3)
        m.u32(5)
        m.w.bytes += [1, 2, 3, 4, 5]
        let whole = m.finish()
        let head = Array(whole.prefix(NinePWire.readHeaderSize))
        var r = try NinePWire.body(head, written: whole.count, expecting: .rread)
        r.tail = DMASlice(offset: 4096 + head.count, length: whole.count - head.count)
        #expect(try r.u32() == 5)
        var wrongCount = r
        #expect(throws: NinePError.self) { try wrongCount.data(4) }
        guard case .dma(let slice) = try r.data(5) else { Issue.record("the data was not left in DMA memory"); return }
        #expect(slice == DMASlice(offset: 4096 + 11, length: 5))
        // The device says it wrote less than the reply's size field.
        #expect(throws: NinePError.self) { try NinePWire.body(head, written: whole.count - 1, expecting: .rread) }
        // Copied whole, the data is in the array.
        var all = try NinePWire.body(whole, expecting: .rread)
        _ = try all.u32()
        guard case .array(let bytes) = try all.data(5) else { Issue.record("copied data not in the array"); return }
        #expect(Array(bytes) == [1, 2, 3, 4, 5])
    }

    @Test func fuseRequestsAreBounded() {
        var w = ByteWriter()
        w.u32(44); w.u32(1); w.u64(7); w.u64(1); w.u32(0); w.u32(0); w.u32(0); w.u32(0)
        // A length that is not the read's: refused.
        #expect(FUSEWire.Request(w.bytes + [97, 98, 0]) == nil)
        let r = FUSEWire.Request(w.bytes + [97, 98, 0, 0])!
        #expect(r.names(from: 0, count: 1) == [Array("ab".utf8)])
        #expect(r.names(from: 0, count: 2) == nil && r.u64(0) == nil)
        // Names with a slash are never passed on.
        let slash = FUSEWire.Request(w.bytes + [97, 47, 98, 0])!
        #expect(slash.names(from: 0, count: 1) == nil)
        #expect(FUSEWire.entry(node: 2, NinePWire.Attributes()).count == 128)
        #expect(FUSEWire.attrOut(NinePWire.Attributes()).count == 104)
        #expect(FUSEWire.direntSize(Array("abc".utf8)) == 32)
        // rdev: glibc's makedev(8, 1) as the kernel's new_encode_dev.
        #expect(FUSEWire.encodeDevice(0x801) == 0x801)
        #expect(FUSEWire.encodeDevice(0x10303) == 0x10303) // makedev(259, 3)
    }
}
