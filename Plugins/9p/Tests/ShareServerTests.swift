import FoundationEssentials
import Glibc
import Testing
import VirtioCore
@testable import virtiod_9p

/// The FUSE side against the in-memory 9P server: requests as the kernel
/// sends them, answers as it reads them.
@Suite struct ShareServerTests {
    final class Harness {
        let nine = FakeNinePServer()
        var replies: [UInt64: [UInt8]] = [:]
        var unique: UInt64 = 0
        lazy var server = ShareServer(channel: nine, tables: ShareTables(rootQid: 1), address: "test", readOnly: readOnly,
                                      initialized: false) { [unowned self] reply in
            let bytes = reply.bytes
            var r = ByteReader(bytes: bytes, at: 8)
            self.replies[r.u64()] = bytes
        }
        var readOnly = false

        /// Send one request; returns (error, body) of its answer.
        @discardableResult
        func call(_ op: FUSEWire.Opcode, node: UInt64 = 1, _ body: [UInt8] = [], uid: UInt32 = 0) -> (Int32, [UInt8]) {
            unique += 2
            var w = ByteWriter()
            w.u32(UInt32(FUSEWire.inHeaderSize + body.count)); w.u32(op.rawValue); w.u64(unique); w.u64(node)
            w.u32(uid); w.u32(0); w.u32(1234); w.u32(0)
            server.handle(FUSEWire.Request(w.bytes + body)!)
            nine.pump()
            guard let r = replies.removeValue(forKey: unique) else { return (-1000, []) }
            var h = ByteReader(bytes: r)
            let length = h.u32(), error = Int32(bitPattern: h.u32())
            #expect(Int(length) == r.count)
            return (error, Array(r[16...]))
        }

        func name(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }
        func u64(_ b: [UInt8], _ at: Int) -> UInt64 { var r = ByteReader(bytes: b, at: at); return r.u64() }
        func u32(_ b: [UInt8], _ at: Int) -> UInt32 { var r = ByteReader(bytes: b, at: at); return r.u32() }

        func create(_ name: String, in dir: UInt64 = 1) -> (node: UInt64, fh: UInt64) {
            var w = ByteWriter()
            w.u32(UInt32(O_RDWR)); w.u32(0o644); w.u32(0o022); w.u32(0)
            let (e, b) = call(.create, node: dir, w.bytes + self.name(name))
            #expect(e == 0 && b.count == 128 + 16)
            return (u64(b, 0), u64(b, 128))
        }

        func write(_ fh: UInt64, _ data: [UInt8], at offset: UInt64 = 0) -> Int32 {
            var w = ByteWriter()
            w.u64(fh); w.u64(offset); w.u32(UInt32(data.count)); w.u32(0); w.u64(0); w.u32(0); w.u32(0)
            return call(.write, w.bytes + data).0
        }

        func read(_ fh: UInt64, _ size: UInt32, at offset: UInt64 = 0) -> (Int32, [UInt8]) {
            var w = ByteWriter()
            w.u64(fh); w.u64(offset); w.u32(size); w.u32(0); w.u64(0); w.u32(0); w.u32(0)
            return call(.read, w.bytes)
        }

        func release(_ fh: UInt64) {
            var w = ByteWriter()
            w.u64(fh); w.u32(0); w.u32(0); w.u64(0)
            #expect(call(.release, w.bytes).0 == 0)
        }

        func forget(_ node: UInt64, _ n: UInt64) {
            var w = ByteWriter()
            w.u64(n)
            unique += 2
            var h = ByteWriter()
            h.u32(UInt32(FUSEWire.inHeaderSize + 8)); h.u32(FUSEWire.Opcode.forget.rawValue); h.u64(unique); h.u64(node)
            h.u32(0); h.u32(0); h.u32(0); h.u32(0)
            server.handle(FUSEWire.Request(h.bytes + w.bytes)!)
            nine.pump()
        }
    }

    @Test func initAnswersWhatTheKernelOffered() {
        let t = Harness()
        var w = ByteWriter()
        w.u32(7); w.u32(38); w.u32(131072); w.u32(0xffff_ffff)
        let (e, b) = t.call(.initialize, w.bytes)
        #expect(e == 0 && b.count == 64)
        #expect(t.u32(b, 0) == 7 && t.u32(b, 4) == 31)
        let flags = t.u32(b, 12)
        #expect(flags & FUSEWire.InitFlag.doReaddirplus != 0 && flags & FUSEWire.InitFlag.bigWrites != 0)
        #expect(t.u32(b, 20) == 127 * 4096) // max_write: what msize 512 KiB leaves after Twrite's header, in pages
        #expect(t.u32(b, 8) == 2 << 20)     // max_readahead: more than offered (the kernel keeps the smaller of it and the bdi's)
        #expect(t.server.initialized)
        // An old kernel is refused, not misunderstood.
        let old = Harness()
        var o = ByteWriter()
        o.u32(7); o.u32(19); o.u32(0); o.u32(0)
        #expect(old.call(.initialize, o.bytes).0 == -EPROTO)
    }

    @Test func createWriteReadLookupAndForgetLeaveNoFid() {
        let t = Harness()
        let (node, fh) = t.create("a.txt")
        let data = (0..<70000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        #expect(t.write(fh, data) == 0)
        let (e, got) = t.read(fh, 131072)
        #expect(e == 0 && got == data)
        // Reading past the end gives nothing, not an error.
        #expect(t.read(fh, 4096, at: 100_000) == (0, []))
        t.release(fh)
        // A lookup of the same file finds the same node (one more lookup).
        let (le, entry) = t.call(.lookup, t.name("a.txt"))
        #expect(le == 0 && t.u64(entry, 0) == node)
        #expect(t.u64(entry, 40 + 8) == 70000) // attr.size
        #expect(t.call(.lookup, t.name("missing")).0 == -ENOENT)
        // Two lookups to forget: then every fid but the root's is clunked.
        t.forget(node, 2)
        #expect(t.nine.refs.keys.sorted() == [ShareTables.rootFid])
        #expect(t.server.tables.nodes.count == 1 && t.server.busy == 0)
    }

    @Test func directoriesReaddirplusRenameUnlink() {
        let t = Harness()
        var w = ByteWriter()
        w.u32(0o755); w.u32(0o022)
        let (me, dir) = t.call(.mkdir, w.bytes + t.name("d"))
        #expect(me == 0)
        let d = t.u64(dir, 0)
        for n in ["x", "y", "z"] { t.release(t.create(n, in: d).fh) }
        // READDIRPLUS: every entry with its attributes.
        var o = ByteWriter()
        o.u32(UInt32(O_RDONLY)); o.u32(0)
        let (oe, open) = t.call(.opendir, node: d, o.bytes)
        #expect(oe == 0)
        let dfh = t.u64(open, 0)
        var r = ByteWriter()
        r.u64(dfh); r.u64(0); r.u32(4096); r.u32(0); r.u64(0); r.u32(0); r.u32(0)
        let (re, listing) = t.call(.readdirplus, r.bytes)
        #expect(re == 0)
        var names: [String] = [], at = 0
        while at < listing.count {
            #expect(t.u64(listing, at) != 0) // a node for each
            let length = Int(t.u32(listing, at + 128 + 16))
            names.append(String(decoding: listing[(at + 128 + 24)..<(at + 128 + 24 + length)], as: UTF8.self))
            at += FUSEWire.direntplusSize(Array(repeating: 0, count: length))
        }
        #expect(names == ["x", "y", "z"])
        // A name with a slash from a lying server is left out, not passed to the kernel.
        t.nine.files[999] = FakeNinePServer.File(names: [FakeNinePServer.Name(parent: t.nine.refs[t.server.tables.node(d)!.fid]!.file,
                                                                             name: Array("a/b".utf8))], directory: false, mode: 0o100644)
        var again = ByteWriter()
        again.u64(dfh); again.u64(0); again.u32(4096); again.u32(0); again.u64(0); again.u32(0); again.u32(0)
        let (ae, listing2) = t.call(.readdir, again.bytes)
        #expect(ae == 0 && listing2.count == 3 * FUSEWire.direntSize(Array("x".utf8)))
        t.nine.files[999] = nil
        // A small buffer takes only what fits.
        var small = ByteWriter()
        small.u64(dfh); small.u64(0); small.u32(160); small.u32(0); small.u64(0); small.u32(0); small.u32(0)
        #expect(t.call(.readdirplus, small.bytes).1.count == FUSEWire.direntplusSize(Array("x".utf8)))
        // rmdir of a directory with entries: ENOTEMPTY; rename over an existing file.
        #expect(t.call(.rmdir, t.name("d")).0 == -ENOTEMPTY)
        var rn = ByteWriter()
        rn.u64(d)
        #expect(t.call(.rename, node: d, rn.bytes + t.name("x") + t.name("y")).0 == 0)
        #expect(t.call(.lookup, node: d, t.name("x")).0 == -ENOENT)
        var rn2 = ByteWriter()
        rn2.u64(d); rn2.u32(1); rn2.u32(0) // RENAME_NOREPLACE: as v9fs, refused
        #expect(t.call(.rename2, node: d, rn2.bytes + t.name("y") + t.name("w")).0 == -EINVAL)
        for n in ["y", "z"] { #expect(t.call(.unlink, node: d, t.name(n)).0 == 0) }
        #expect(t.call(.rmdir, t.name("d")).0 == 0)
    }

    /// Hard links (git's object files: link, then unlink the temporary name)
    /// and unlink of an open file, as QEMU's path-named fids need them.
    @Test func hardLinksAndUnlinkedOpenFiles() {
        let t = Harness()
        let (node, fh) = t.create("tmp")
        #expect(t.write(fh, Array("abc".utf8)) == 0)
        t.release(fh)
        var l = ByteWriter()
        l.u64(node)
        let (le, entry) = t.call(.link, l.bytes + t.name("final"))
        #expect(le == 0 && t.u64(entry, 0) == node)
        #expect(t.call(.unlink, t.name("tmp")).0 == 0)
        // Opened through the node after its first name went: the other name's fid reaches it.
        var o = ByteWriter()
        o.u32(UInt32(O_RDONLY)); o.u32(0)
        let (oe, open) = t.call(.open, node: node, o.bytes)
        #expect(oe == 0)
        let h2 = t.u64(open, 0)
        #expect(t.read(h2, 100) == (0, Array("abc".utf8)))
        // Its last name goes while it is open: attributes still come (through the open fid).
        #expect(t.call(.unlink, t.name("final")).0 == 0)
        let (ge, attr) = t.call(.getattr, node: node, [UInt8](repeating: 0, count: 16))
        #expect(ge == 0 && t.u64(attr, 16 + 8) == 3)
        t.release(h2)
        t.forget(node, 2)
        #expect(t.nine.refs.keys.sorted() == [ShareTables.rootFid])
    }

    @Test func symlinksStatfsAndUnknownOpcodes() {
        let t = Harness()
        let (e, entry) = t.call(.symlink, t.name("l") + t.name("../some/where"))
        #expect(e == 0)
        let (re, target) = t.call(.readlink, node: t.u64(entry, 0))
        #expect(re == 0 && target == Array("../some/where".utf8))
        let (se, st) = t.call(.statfs)
        #expect(se == 0 && st.count == 80 && t.u64(st, 0) == 100)
        #expect(t.call(.getxattr, [0, 0, 0, 0, 0, 0, 0, 0]).0 == -ENOSYS)
        #expect(t.call(.getattr, node: 999, [UInt8](repeating: 0, count: 16)).0 == -ESTALE)
    }

    @Test func readOnlyRefusesChanges() {
        let t = Harness()
        t.readOnly = true
        var w = ByteWriter()
        w.u32(0o755); w.u32(0)
        #expect(t.call(.mkdir, w.bytes + t.name("d")).0 == -EROFS)
        var o = ByteWriter()
        o.u32(UInt32(O_WRONLY)); o.u32(0)
        #expect(t.call(.open, o.bytes).0 == -EROFS)
        #expect(t.nine.files.count == 1)
    }

    @Test func tablesSurviveTheRecord() throws {
        var tables = ShareTables(rootQid: 1)
        let f = tables.allocateFid()!
        let (node, clunk) = tables.learn(fid: f, qid: NinePWire.Qid(type: 0, version: 0, path: 42), parent: 1, name: Array("a".utf8))
        #expect(clunk.isEmpty)
        // A hard link: the same qid path is the same node, the new name an alias with its own fid.
        let g = tables.allocateFid()!
        #expect(tables.learn(fid: g, qid: NinePWire.Qid(type: 0, version: 0, path: 42), parent: 1, name: Array("b".utf8)) == (node, []))
        #expect(tables.node(node)?.fid == g)
        // The same name again: the new fid is surplus.
        let s = tables.allocateFid()!
        #expect(tables.learn(fid: s, qid: NinePWire.Qid(type: 0, version: 0, path: 42), parent: 1, name: Array("a".utf8)) == (node, [s]))
        #expect(tables.node(node)?.fid == f)
        _ = tables.open(fid: tables.allocateFid()!, node: node, directory: false)
        let copy = try JSONDecoder().decode(ShareTables.self, from: JSONEncoder().encode(tables))
        #expect(copy == tables)
        #expect(copy.node(qidPath: 42) == node && copy.path(node) == "/a")
        // Unlinking one name clunks its alias; the last name stays (open files live on).
        #expect(tables.unlinked(parent: 1, name: Array("a".utf8)) == [f])
        #expect(tables.unlinked(parent: 1, name: Array("b".utf8)) == [])
        #expect(tables.forget(node, count: 3) == [g])
    }
}
