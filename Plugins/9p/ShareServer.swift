import Glibc
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// The share as a FUSE filesystem: each request read from /dev/fuse becomes
/// one or a few 9P2000.L requests (`NinePChannel`), answered when their
/// replies are in. Many run at once; none blocks the event loop.
///
/// Mapping (FUSE → 9P): LOOKUP → Twalk + Tgetattr; GETATTR → Tgetattr (on
/// the open fid for fstat, which works after unlink); SETATTR → Tsetattr;
/// OPEN/OPENDIR → Twalk (clone) + Tlopen; CREATE → clone + Tlcreate + Twalk
/// + Tgetattr; READ/WRITE → Tread/Twrite; READDIR(PLUS) → Treaddir (+ Twalk
/// and Tgetattr per entry); MKDIR/MKNOD/SYMLINK → Tmkdir/Tmknod/Tsymlink +
/// lookup; LINK → Tlink; UNLINK/RMDIR → Tunlinkat; RENAME → Trenameat;
/// READLINK, STATFS, FSYNC as such; RELEASE/FORGET → Tclunk; INTERRUPT →
/// Tflush. Errors are the server's errnos.
final class ShareServer {
    /// What the server needs of the FUSE side: a reply written to /dev/fuse.
    let reply: (FUSEWire.Reply) -> Void
    let channel: any NinePChannel
    private(set) var tables: ShareTables
    let address: String
    let readOnly: Bool
    /// FUSE requests being worked on: unique → the 9P request in flight for
    /// it (for INTERRUPT), if any.
    private var working: [UInt64: Int?] = [:]
    var counters = Counters()
    /// INIT was answered (by this process or one before it).
    private(set) var initialized: Bool

    struct Counters: Codable, Equatable {
        var requests: UInt64 = 0, errors: UInt64 = 0, unsupported: UInt64 = 0, interrupts: UInt64 = 0, stale: UInt64 = 0
        var lookups: UInt64 = 0, reads: UInt64 = 0, writes: UInt64 = 0
    }

    init(channel: any NinePChannel, tables: ShareTables, address: String, readOnly: Bool, initialized: Bool,
         reply: @escaping (FUSEWire.Reply) -> Void) {
        self.channel = channel
        self.tables = tables
        self.address = address
        self.readOnly = readOnly
        self.initialized = initialized
        self.reply = reply
    }

    var busy: Int { working.count }

    /// Sequential reads ask this far ahead (`FUSEDevice.shareReadAheadKiB`):
    /// 4 READs of up to 508 KiB at once, which go to the server in parallel.
    static let readAhead = UInt32(FUSEDevice.shareReadAheadKiB) * 1024

    /// The largest read or write one 9P message carries.
    var ioSize: UInt32 { (channel.msize - UInt32(NinePWire.writeHeaderSize)) / 4096 * 4096 }

    // MARK: answering

    private func answer(_ h: FUSEWire.Header, _ body: [UInt8] = []) {
        answer(h, .array(body[...]))
    }

    private func answer(_ h: FUSEWire.Header, _ body: MessageBytes) {
        working[h.unique] = nil
        reply(FUSEWire.reply(unique: h.unique, body))
    }

    private func fail(_ h: FUSEWire.Header, _ errno: Int32) {
        working[h.unique] = nil
        counters.errors &+= 1
        reply(FUSEWire.reply(unique: h.unique, error: errno))
    }

    private func fail(_ h: FUSEWire.Header, _ e: NinePError) {
        if case .malformed = e { PluginLog.warning("9p \(address): \(FUSEWire.Opcode(rawValue: h.opcode).map { "\($0)" } ?? "?"): \(e)") }
        fail(h, e.errno)
    }

    /// Send a 9P request on behalf of FUSE request `h` (nil: of several at
    /// once, which INTERRUPT does not reach), remembering it for INTERRUPT.
    private func send(_ h: FUSEWire.Header?, _ r: NinePWire.Request, payload: NinePPayload = .bytes([]),
                      _ done: @escaping (Result<NinePWire.Reader, NinePError>) -> Void) {
        let id = channel.send(r, payload: payload, done)
        if let h, working.keys.contains(h.unique) { working[h.unique] = .some(id) }
    }

    /// A new fid for the file `from` names (a zero-name Twalk), for
    /// opening; the request fails (and the fid is given back) if the walk does.
    private func clone(_ h: FUSEWire.Header, from: UInt32, _ then: @escaping (UInt32) -> Void) {
        guard let fid = newFid(h) else { return }
        send(h, .walk(fid: from, newFid: fid, names: [])) { result in
            if case .failure(let e) = result {
                self.tables.releaseFid(fid)
                return self.fail(h, e)
            }
            then(fid)
        }
    }

    private func clunk(_ fid: UInt32) {
        channel.send(.clunk(fid: fid)) { [weak self] _ in self?.tables.releaseFid(fid) }
    }

    // MARK: requests

    /// One request from /dev/fuse.
    /// Serve one request. A WRITE's data may be with the channel already
    /// (`writeData`: read from /dev/fuse straight into its slot); the
    /// caller takes it back if this did not send it.
    func handle(_ r: FUSEWire.Request, writeData: NinePPayload? = nil) {
        let h = r.header
        counters.requests &+= 1
        guard let op = r.opcode else {
            counters.unsupported &+= 1
            return fail(h, ENOSYS)
        }
        switch op {
        case .forget:
            if let n = r.u64(0) { forget(h.nodeID, n) }
            return
        case .batchForget:
            guard let count = r.u32(0) else { return }
            for i in 0..<min(Int(count), (r.body.count - 8) / 16) {
                if let node = r.u64(8 + i * 16), let n = r.u64(16 + i * 16) { forget(node, n) }
            }
            return
        case .interrupt:
            counters.interrupts &+= 1
            if let unique = r.u64(0), let inFlight = working[unique], let id = inFlight { channel.flush(id) }
            return
        default: break
        }
        working[h.unique] = .some(nil)
        if readOnly, [.setattr, .symlink, .mknod, .mkdir, .unlink, .rmdir, .rename, .rename2, .link, .create, .write].contains(op) {
            return fail(h, EROFS)
        }
        switch op {
        case .initialize: initialize(r)
        case .destroy: answer(h)
        case .lookup: lookup(r)
        case .getattr: getattr(r)
        case .setattr: setattr(r)
        case .readlink: withNode(h) { n in self.send(h, .readlink(fid: n.fid)) { self.done(h, $0) { r in try r.string() } } }
        case .open: open(r, directory: false)
        case .opendir: open(r, directory: true)
        case .create: create(r)
        case .read: read(r)
        case .write: write(r, writeData)
        case .release, .releasedir: release(r)
        case .flush: answer(h)
        case .fsync, .fsyncdir: fsync(r)
        case .readdir: readdir(r, plus: false)
        case .readdirplus: readdir(r, plus: true)
        case .mkdir: mkdir(r)
        case .mknod: mknod(r)
        case .symlink: symlink(r)
        case .link: link(r)
        case .unlink, .rmdir: unlink(r, directory: op == .rmdir)
        case .rename: rename(r, flagsAt: nil)
        case .rename2: rename(r, flagsAt: 8)
        case .statfs:
            send(h, .statfs(fid: ShareTables.rootFid)) { self.done(h, $0) { r in FUSEWire.statfsOut(try NinePWire.statfs(&r)) } }
        default:
            // ACCESS (default_permissions does the checks), xattrs, locks
            // (the kernel then locks locally), fallocate, lseek, ioctl…
            counters.unsupported &+= 1
            fail(h, ENOSYS)
        }
    }

    /// A 9P reply turned into the FUSE answer by `body`, or its error.
    private func done(_ h: FUSEWire.Header, _ result: Result<NinePWire.Reader, NinePError>,
                      _ body: (inout NinePWire.Reader) throws -> [UInt8]) {
        done(h, result) { r -> MessageBytes in .array(try body(&r)[...]) }
    }

    private func done(_ h: FUSEWire.Header, _ result: Result<NinePWire.Reader, NinePError>,
                      _ body: (inout NinePWire.Reader) throws -> MessageBytes) {
        switch result {
        case .failure(let e): fail(h, e)
        case .success(var r):
            do { answer(h, try body(&r)) } catch let e as NinePError { fail(h, e) } catch { fail(h, EIO) }
        }
    }

    private func withNode(_ h: FUSEWire.Header, _ id: UInt64? = nil, _ body: (ShareTables.Node) -> Void) {
        guard let n = tables.node(id ?? h.nodeID) else {
            counters.stale &+= 1
            return fail(h, ESTALE)
        }
        body(n)
    }

    private func withHandle(_ h: FUSEWire.Header, _ fh: UInt64?, _ body: (ShareTables.Handle) -> Void) {
        guard let fh, let handle = tables.handle(fh) else { return fail(h, EBADF) }
        body(handle)
    }

    private func newFid(_ h: FUSEWire.Header) -> UInt32? {
        guard let f = tables.allocateFid() else {
            fail(h, ENFILE)
            return nil
        }
        return f
    }

    // MARK: INIT

    private func initialize(_ r: FUSEWire.Request) {
        let h = r.header
        guard let major = r.u32(0), let minor = r.u32(4), let readahead = r.u32(8), let flags = r.u32(12) else { return fail(h, EINVAL) }
        guard major == FUSEWire.kernelMajor, minor >= 26 else {
            PluginLog.error("9p \(address): the kernel speaks FUSE \(major).\(minor); this plugin needs 7.26 or later")
            return fail(h, EPROTO)
        }
        let f = FUSEWire.InitFlag.self
        let wanted = f.asyncRead | f.atomicOpenTrunc | f.bigWrites | f.autoInvalData | f.doReaddirplus | f.readdirplusAuto
            | f.parallelDirops | f.maxPages
        let size = ioSize
        initialized = true
        PluginLog.info("9p \(address): FUSE \(major).\(minor) session up (reads and writes up to \(size / 1024) KiB)")
        // The kernel keeps the smaller of this and the mount's read_ahead_kb,
        // which the mount helper raises to the same.
        answer(h, FUSEWire.initOut(minor: min(minor, FUSEWire.minorSpoken), maxReadahead: max(readahead, Self.readAhead), flags: flags & wanted,
                                   maxWrite: size, maxPages: UInt16(size / 4096)))
    }

    // MARK: nodes

    private func forget(_ id: UInt64, _ n: UInt64) {
        for fid in tables.forget(id, count: n) { clunk(fid) }
    }

    private func lookup(_ r: FUSEWire.Request) {
        let h = r.header
        guard let name = r.names(from: 0, count: 1)?[0] else { return fail(h, EINVAL) }
        counters.lookups &+= 1
        withNode(h) { parent in
            self.entry(h, parent: h.nodeID, parentFid: parent.fid, name: name) { result in
                switch result {
                case .success(let (node, attributes)): self.answer(h, FUSEWire.entry(node: node, attributes))
                case .failure(let e): self.fail(h, e)
                }
            }
        }
    }

    /// Walk to `name` in the directory `parentFid` names and get its
    /// attributes: the node the kernel now knows it by (one lookup more).
    private func entry(_ h: FUSEWire.Header?, parent: UInt64, parentFid: UInt32, name: [UInt8],
                       _ done: @escaping (Result<(UInt64, NinePWire.Attributes), NinePError>) -> Void) {
        guard let fid = tables.allocateFid() else { return done(.failure(.server(ENFILE))) }
        let walk = NinePWire.Request.walk(fid: parentFid, newFid: fid, names: [name])
        let afterWalk: (Result<NinePWire.Reader, NinePError>) -> Void = { result in
            switch result {
            case .failure(let e):
                self.tables.releaseFid(fid)
                done(.failure(e))
            case .success(var r):
                // A partial walk (fewer qids than names) creates no fid.
                guard let n = try? r.u16(), n == 1 else {
                    self.tables.releaseFid(fid)
                    return done(.failure(.server(ENOENT)))
                }
                let getattr: (Result<NinePWire.Reader, NinePError>) -> Void = { result in
                    switch result {
                    case .failure(let e):
                        self.clunk(fid)
                        done(.failure(e))
                    case .success(var r):
                        guard let a = try? NinePWire.attributes(&r) else {
                            self.clunk(fid)
                            return done(.failure(.malformed("Rgetattr")))
                        }
                        let learnt = self.tables.learn(fid: fid, qid: a.qid, parent: parent, name: name)
                        for f in learnt.clunk { self.clunk(f) }
                        done(.success((learnt.node, a)))
                    }
                }
                self.send(h, .getattr(fid: fid), getattr)
            }
        }
        send(h, walk, afterWalk)
    }

    private func getattr(_ r: FUSEWire.Request) {
        let h = r.header
        // FUSE_GETATTR_FH: fstat on an open file (it may be unlinked: its node's path is gone).
        if let flags = r.u32(0), flags & 1 != 0, let fh = r.u64(8), let handle = tables.handle(fh) {
            return send(h, .getattr(fid: handle.fid)) { self.done(h, $0) { r in FUSEWire.attrOut(try NinePWire.attributes(&r)) } }
        }
        guard let fid = tables.attributeFid(h.nodeID) else {
            counters.stale &+= 1
            return fail(h, ESTALE)
        }
        send(h, .getattr(fid: fid)) { self.done(h, $0) { r in FUSEWire.attrOut(try NinePWire.attributes(&r)) } }
    }

    private func setattr(_ r: FUSEWire.Request) {
        let h = r.header
        guard let valid = r.u32(0), let fh = r.u64(8), let size = r.u64(16), let atime = r.u64(32), let mtime = r.u64(40),
              let atimeNsec = r.u32(56), let mtimeNsec = r.u32(60), let mode = r.u32(68), let uid = r.u32(76), let gid = r.u32(80)
        else { return fail(h, EINVAL) }
        let v = FUSEWire.SetattrValid.self
        var a = NinePWire.SetAttributes()
        if valid & v.mode != 0 { a.valid.insert(.mode); a.mode = mode }
        if valid & v.uid != 0 { a.valid.insert(.uid); a.uid = uid }
        if valid & v.gid != 0 { a.valid.insert(.gid); a.gid = gid }
        if valid & v.size != 0 { a.valid.insert(.size); a.size = size }
        // 9P: ATIME alone is "now"; with ATIME_SET the given time.
        if valid & v.atime != 0 { a.valid.insert(.atime); if valid & v.atimeNow == 0 { a.valid.insert(.atimeSet); a.atime = (atime, UInt64(atimeNsec)) } }
        if valid & v.mtime != 0 { a.valid.insert(.mtime); if valid & v.mtimeNow == 0 { a.valid.insert(.mtimeSet); a.mtime = (mtime, UInt64(mtimeNsec)) } }
        if valid & v.ctime != 0 { a.valid.insert(.ctime) }
        // ftruncate of an unlinked file: only its open fid still reaches it.
        let fid: UInt32?
        if valid & v.fh != 0, let handle = tables.handle(fh) { fid = handle.fid } else { fid = tables.attributeFid(h.nodeID) }
        guard let fid else {
            counters.stale &+= 1
            return fail(h, ESTALE)
        }
        send(h, .setattr(fid: fid, a)) { result in
            if case .failure(let e) = result { return self.fail(h, e) }
            self.send(h, .getattr(fid: fid)) { self.done(h, $0) { r in FUSEWire.attrOut(try NinePWire.attributes(&r)) } }
        }
    }

    // MARK: open files

    /// Linux open flags as 9P2000.L's (the same numbers on x86 and arm64),
    /// keeping only what a server should see.
    static func ninePOpenFlags(_ flags: UInt32) -> UInt32 {
        let kept = UInt32(O_ACCMODE | O_APPEND | O_TRUNC | O_DSYNC | O_DIRECTORY | O_NOFOLLOW | O_SYNC | O_EXCL | O_CREAT)
        return flags & kept
    }

    private func open(_ r: FUSEWire.Request, directory: Bool) {
        let h = r.header
        guard let flags = r.u32(0) else { return fail(h, EINVAL) }
        if readOnly, Int32(flags) & O_ACCMODE != O_RDONLY || Int32(flags) & O_TRUNC != 0 { return fail(h, EROFS) }
        withNode(h) { n in
            self.clone(h, from: n.fid) { fid in
                let lflags = directory ? UInt32(O_RDONLY | O_DIRECTORY) : Self.ninePOpenFlags(flags) & ~UInt32(O_CREAT | O_EXCL)
                self.send(h, .lopen(fid: fid, flags: lflags)) { result in
                    if case .failure(let e) = result {
                        self.clunk(fid)
                        return self.fail(h, e)
                    }
                    let handle = self.tables.open(fid: fid, node: h.nodeID, directory: directory)
                    self.answer(h, FUSEWire.openOut(handle: handle))
                }
            }
        }
    }

    private func create(_ r: FUSEWire.Request) {
        let h = r.header
        guard let flags = r.u32(0), let mode = r.u32(4), let name = r.names(from: 16, count: 1)?[0] else { return fail(h, EINVAL) }
        withNode(h) { parent in
            self.clone(h, from: parent.fid) { fid in
                let lflags = Self.ninePOpenFlags(flags) & ~UInt32(O_CREAT | O_EXCL | O_TRUNC)
                self.send(h, .lcreate(fid: fid, name: name, flags: lflags, mode: mode, gid: h.gid)) { result in
                    if case .failure(let e) = result {
                        self.clunk(fid)
                        return self.fail(h, e)
                    }
                    // fid is now the new file, open; its node comes from a walk.
                    self.createdEntry(h, parent: h.nodeID, parentFid: parent.fid, name: name) { entry in
                        switch entry {
                        case .failure(let e):
                            self.clunk(fid)
                            self.fail(h, e)
                        case .success(let (node, bytes)):
                            let handle = self.tables.open(fid: fid, node: node, directory: false)
                            self.answer(h, bytes + FUSEWire.openOut(handle: handle))
                        }
                    }
                }
            }
        }
    }

    /// The entry of a file just made in `parent` (fuse_entry_out bytes),
    /// owned by the requesting user: the server made it as the attaching
    /// user with the requester's group.
    private func createdEntry(_ h: FUSEWire.Header, parent: UInt64, parentFid: UInt32, name: [UInt8],
                              _ done: @escaping (Result<(UInt64, [UInt8]), NinePError>) -> Void) {
        entry(h, parent: parent, parentFid: parentFid, name: name) { result in
            switch result {
            case .failure(let e): done(.failure(e))
            case .success(let (node, attributes)):
                guard attributes.uid != h.uid, let fid = self.tables.node(node)?.fid else {
                    return done(.success((node, FUSEWire.entry(node: node, attributes))))
                }
                var a = NinePWire.SetAttributes()
                a.valid = [.uid]
                a.uid = h.uid
                self.send(h, .setattr(fid: fid, a)) { result in
                    var owned = attributes
                    if case .success = result { owned.uid = h.uid }
                    done(.success((node, FUSEWire.entry(node: node, owned))))
                }
            }
        }
    }

    private func read(_ r: FUSEWire.Request) {
        let h = r.header
        guard let fh = r.u64(0), let offset = r.u64(8), let size = r.u32(16) else { return fail(h, EINVAL) }
        counters.reads &+= 1
        withHandle(h, fh) { handle in
            let count = min(size, self.channel.msize - UInt32(NinePWire.readHeaderSize))
            self.send(h, .read(fid: handle.fid, offset: offset, count: count)) { result in
                self.done(h, result) { r in
                    let n = Int(try r.u32())
                    guard n <= Int(count) else { throw NinePError.malformed("Rread of \(n) bytes for \(count) asked") }
                    return try r.data(n)
                }
            }
        }
    }

    private func write(_ r: FUSEWire.Request, _ placed: NinePPayload?) {
        let h = r.header
        guard let fh = r.u64(0), let offset = r.u64(8), let size = r.u32(16),
              let data = placed ?? r.data(from: 40, count: Int(size)).map(NinePPayload.bytes), data.count == Int(size)
        else { return fail(h, EINVAL) }
        counters.writes &+= 1
        guard size <= ioSize else { return fail(h, EINVAL) }
        withHandle(h, fh) { handle in
            self.send(h, .write(fid: handle.fid, offset: offset, count: size), payload: data) { result in
                self.done(h, result) { r in
                    let n = try r.u32()
                    guard n <= size else { throw NinePError.malformed("Rwrite of \(n) bytes for \(size) sent") }
                    return FUSEWire.writeOut(n)
                }
            }
        }
    }

    private func release(_ r: FUSEWire.Request) {
        let h = r.header
        guard let fh = r.u64(0) else { return fail(h, EINVAL) }
        if let handle = tables.close(fh) { clunk(handle.fid) }
        answer(h)
    }

    private func fsync(_ r: FUSEWire.Request) {
        let h = r.header
        guard let fh = r.u64(0), let flags = r.u32(8) else { return fail(h, EINVAL) }
        withHandle(h, fh) { handle in
            self.send(h, .fsync(fid: handle.fid, dataOnly: flags & 1 != 0)) { self.done(h, $0) { _ in [] } }
        }
    }

    // MARK: directories

    private func readdir(_ r: FUSEWire.Request, plus: Bool) {
        let h = r.header
        guard let fh = r.u64(0), let offset = r.u64(8), let size = r.u32(16) else { return fail(h, EINVAL) }
        withHandle(h, fh) { handle in
            let count = min(size, self.channel.msize - UInt32(NinePWire.readHeaderSize))
            self.send(h, .readdir(fid: handle.fid, offset: offset, count: count)) { result in
                switch result {
                case .failure(let e): self.fail(h, e)
                case .success(var reader):
                    guard let entries = try? NinePWire.directoryEntries(&reader) else {
                        return self.fail(h, .malformed("Rreaddir"))
                    }
                    // As many as the kernel's buffer takes.
                    var fitting: [NinePWire.DirectoryEntry] = []
                    var used = 0
                    // Names come from the device: one with '/' or NUL would make the kernel fail the whole reply.
                    for e in entries where !e.name.isEmpty && e.name.count <= 255 && !e.name.contains(UInt8(ascii: "/")) && !e.name.contains(0) {
                        let s = plus ? FUSEWire.direntplusSize(e.name) : FUSEWire.direntSize(e.name)
                        if used + s > Int(size) { break }
                        used += s
                        fitting.append(e)
                    }
                    if plus {
                        self.direntsPlus(h, directory: handle.node, fitting)
                    } else {
                        var w = ByteWriter()
                        for e in fitting { FUSEWire.dirent(ino: e.qid.path, offset: e.offset, type: e.type, name: e.name, into: &w) }
                        self.answer(h, w.bytes)
                    }
                }
            }
        }
    }

    /// READDIRPLUS: every entry but . and .. looked up (in parallel), then
    /// the answer; an entry that vanished meanwhile goes without attributes.
    private func direntsPlus(_ h: FUSEWire.Header, directory: UInt64, _ entries: [NinePWire.DirectoryEntry]) {
        guard let dir = tables.node(directory) else { return fail(h, ESTALE) }
        var found = [(UInt64, NinePWire.Attributes)?](repeating: nil, count: entries.count)
        var remaining = entries.count
        let finish = {
            var w = ByteWriter()
            for (i, e) in entries.enumerated() {
                if let (node, a) = found[i] {
                    FUSEWire.entry(node: node, a, into: &w)
                } else {
                    w.zeros(128) // nodeid 0: no entry, the kernel looks it up if it wants it
                }
                FUSEWire.dirent(ino: e.qid.path, offset: e.offset, type: e.type, name: e.name, into: &w)
            }
            self.answer(h, w.bytes)
        }
        guard remaining > 0 else { return finish() }
        for (i, e) in entries.enumerated() {
            if e.name == Array(".".utf8) || e.name == Array("..".utf8) {
                remaining -= 1
                if remaining == 0 { finish() }
                continue
            }
            entry(nil, parent: directory, parentFid: dir.fid, name: e.name) { result in
                if case .success(let found1) = result { found[i] = found1 }
                remaining -= 1
                if remaining == 0 { finish() }
            }
        }
    }

    private func mkdir(_ r: FUSEWire.Request) {
        let h = r.header
        guard let mode = r.u32(0), let name = r.names(from: 8, count: 1)?[0] else { return fail(h, EINVAL) }
        made(h, name) { parent, done in self.send(h, .mkdir(fid: parent.fid, name: name, mode: mode & 0o7777, gid: h.gid), done) }
    }

    private func mknod(_ r: FUSEWire.Request) {
        let h = r.header
        guard let mode = r.u32(0), let rdev = r.u32(4), let name = r.names(from: 16, count: 1)?[0] else { return fail(h, EINVAL) }
        let major = (rdev & 0xfff00) >> 8, minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00)
        made(h, name) { parent, done in
            self.send(h, .mknod(fid: parent.fid, name: name, mode: mode, major: major, minor: minor, gid: h.gid), done)
        }
    }

    private func symlink(_ r: FUSEWire.Request) {
        let h = r.header
        // SYMLINK: the new name, then the target (which may hold '/').
        guard let end = r.body.firstIndex(of: 0), end > 0, end <= 255 else { return fail(h, EINVAL) }
        let name = Array(r.body[..<end])
        let rest = r.body[(end + 1)...]
        guard !name.contains(UInt8(ascii: "/")), let tend = rest.firstIndex(of: 0), tend > rest.startIndex else { return fail(h, EINVAL) }
        let target = Array(rest[..<tend])
        made(h, name) { parent, done in
            self.send(h, .symlink(fid: parent.fid, name: name, target: target, gid: h.gid), done)
        }
    }

    /// Make `name` in the request's directory with `make`, then answer its entry.
    private func made(_ h: FUSEWire.Header, _ name: [UInt8],
                      _ make: @escaping (ShareTables.Node, @escaping (Result<NinePWire.Reader, NinePError>) -> Void) -> Void) {
        withNode(h) { parent in
            make(parent) { result in
                if case .failure(let e) = result { return self.fail(h, e) }
                self.createdEntry(h, parent: h.nodeID, parentFid: parent.fid, name: name) { entry in
                    switch entry {
                    case .failure(let e): self.fail(h, e)
                    case .success(let (_, bytes)): self.answer(h, bytes)
                    }
                }
            }
        }
    }

    private func link(_ r: FUSEWire.Request) {
        let h = r.header
        guard let old = r.u64(0), let name = r.names(from: 8, count: 1)?[0] else { return fail(h, EINVAL) }
        withNode(h) { parent in
            self.withNode(h, old) { target in
                self.send(h, .link(directory: parent.fid, fid: target.fid, name: name)) { result in
                    if case .failure(let e) = result { return self.fail(h, e) }
                    // The new name gets a fid of its own (the node's alias).
                    self.entry(h, parent: h.nodeID, parentFid: parent.fid, name: name) { result in
                        switch result {
                        case .success(let (node, attributes)): self.answer(h, FUSEWire.entry(node: node, attributes))
                        case .failure(let e): self.fail(h, e)
                        }
                    }
                }
            }
        }
    }

    private func unlink(_ r: FUSEWire.Request, directory: Bool) {
        let h = r.header
        guard let name = r.names(from: 0, count: 1)?[0] else { return fail(h, EINVAL) }
        withNode(h) { parent in
            self.send(h, .unlinkat(directory: parent.fid, name: name, flags: directory ? NinePWire.removeDirectory : 0)) { result in
                if case .success = result { for f in self.tables.unlinked(parent: h.nodeID, name: name) { self.clunk(f) } }
                self.done(h, result) { _ in [] }
            }
        }
    }

    private func rename(_ r: FUSEWire.Request, flagsAt: Int?) {
        let h = r.header
        guard let newParent = r.u64(0) else { return fail(h, EINVAL) }
        let namesAt = flagsAt == nil ? 8 : 16
        if let flagsAt, let flags = r.u32(flagsAt), flags != 0 {
            // RENAME_NOREPLACE/EXCHANGE/WHITEOUT: 9P2000.L has no such renames (v9fs refuses them too).
            return fail(h, EINVAL)
        }
        guard let names = r.names(from: namesAt, count: 2) else { return fail(h, EINVAL) }
        withNode(h) { from in
            self.withNode(h, newParent) { to in
                self.send(h, .renameat(oldDirectory: from.fid, oldName: names[0], newDirectory: to.fid, newName: names[1])) { result in
                    if case .success = result {
                        for f in self.tables.renamed(parent: h.nodeID, name: names[0], to: newParent, names[1]) { self.clunk(f) }
                    }
                    self.done(h, result) { _ in [] }
                }
            }
        }
    }

    // MARK: hand-over

    /// Requests answered with an error because the device was reset under them.
    func abandonAll() {
        for unique in working.keys { reply(FUSEWire.reply(unique: unique, error: EIO)) }
        working = [:]
    }
}
