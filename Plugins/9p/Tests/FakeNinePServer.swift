import VirtioCore
@testable import virtiod_9p

/// A 9P2000.L server in memory, for the FUSE side's tests: a tree of
/// directories and files (with hard links), fids that name them by path as
/// QEMU's do (a fid whose name was unlinked reaches nothing, unless it is
/// open), replies delivered when the test calls `pump()` (as the device's
/// would arrive later). Real servers are QEMU's (the VM suite); this one
/// checks what the client asks for.
final class FakeNinePServer: NinePChannel {
    struct Name: Equatable {
        var parent: UInt64
        var name: [UInt8]
    }

    struct File {
        var names: [Name]
        var directory: Bool
        var data: [UInt8] = []
        var mode: UInt32
        var target: [UInt8]? = nil
        var links: UInt64 { UInt64(max(names.count, 1)) }
    }

    var files: [UInt64: File] = [1: File(names: [Name(parent: 1, name: [])], directory: true, mode: 0o40755)]
    /// fid → the file and the name it reached it by.
    var refs: [UInt32: (file: UInt64, by: Name)] = [:]
    var fids: [UInt32: UInt64] {
        refs.filter { valid($0.key) }.mapValues(\.file)
    }
    var opened: Set<UInt32> = []
    private var nextPath: UInt64 = 2
    private var queued: [() -> Void] = []
    private var nextID = 0
    var sent: [NinePWire.Request] = []
    var msize: UInt32 = NinePSession.preferredMsize

    init() { refs[ShareTables.rootFid] = (1, Name(parent: 1, name: [])) }

    /// Whether `fid` reaches its file: open, or by a name the file still has.
    func valid(_ fid: UInt32) -> Bool {
        guard let r = refs[fid], let f = files[r.file] else { return false }
        return opened.contains(fid) || r.file == 1 || f.names.contains(r.by)
    }

    func file(_ fid: UInt32) -> UInt64? { valid(fid) ? refs[fid]!.file : nil }

    @discardableResult
    func send(_ request: NinePWire.Request, payload: NinePPayload, _ done: @escaping (Result<NinePWire.Reader, NinePError>) -> Void) -> Int? {
        sent.append(request)
        guard case .bytes(let payload) = payload else { fatalError("the fake server holds no slots") }
        let reply = answer(request, payload)
        queued.append {
            do {
                var bytes = reply.finish()
                if bytes.count < NinePWire.headerSize { bytes = [] }
                done(.success(try NinePWire.body(bytes, expecting: request.replyType)))
            } catch let e as NinePError { done(.failure(e)) } catch { done(.failure(.lost)) }
        }
        nextID += 1
        return nextID
    }

    func flush(_ id: Int) {}

    /// Deliver every queued reply (and those their callbacks cause).
    func pump() {
        while !queued.isEmpty { queued.removeFirst()() }
    }

    func child(_ dir: UInt64, _ name: [UInt8]) -> UInt64? {
        files.first { $0.key != 1 && $0.value.names.contains(Name(parent: dir, name: name)) }?.key
    }

    func qid(_ path: UInt64) -> NinePWire.Qid {
        NinePWire.Qid(type: files[path]!.directory ? 0x80 : files[path]!.target != nil ? 0x02 : 0, version: 0, path: path)
    }

    private func error(_ e: Int32) -> NinePWire.Message {
        var m = NinePWire.Message(.rlerror, tag: 0)
        m.u32(UInt32(e))
        return m
    }

    private func put(_ m: inout NinePWire.Message, _ q: NinePWire.Qid) { m.u8(q.type); m.u32(q.version); m.u64(q.path) }

    private func make(_ dir: UInt32, _ name: [UInt8], directory: Bool, mode: UInt32, target: [UInt8]? = nil) -> NinePWire.Message {
        guard let d = file(dir) else { return error(9) }
        guard child(d, name) == nil else { return error(17) }
        let p = nextPath
        nextPath += 1
        files[p] = File(names: [Name(parent: d, name: name)], directory: directory, mode: mode, target: target)
        var m = NinePWire.Message(directory ? .rmkdir : target != nil ? .rsymlink : .rmknod, tag: 0)
        put(&m, qid(p))
        return m
    }

    private func answer(_ r: NinePWire.Request, _ payload: ArraySlice<UInt8>) -> NinePWire.Message {
        switch r {
        case .walk(let fid, let newFid, let names):
            guard var at = file(fid) else { return error(2) }
            var by = refs[fid]!.by
            var qids: [NinePWire.Qid] = []
            for n in names {
                guard let c = child(at, n) else {
                    if qids.isEmpty { return error(2) }
                    break
                }
                by = Name(parent: at, name: n)
                at = c
                qids.append(qid(c))
            }
            if qids.count == names.count { refs[newFid] = (at, by) }
            var m = NinePWire.Message(.rwalk, tag: 0)
            m.u16(UInt16(qids.count))
            for q in qids { put(&m, q) }
            return m
        case .getattr(let fid):
            guard let p = file(fid), let f = files[p] else { return error(2) }
            var m = NinePWire.Message(.rgetattr, tag: 0)
            m.u64(0x7ff); put(&m, qid(p))
            m.u32(f.mode); m.u32(0); m.u32(0); m.u64(f.links); m.u64(0); m.u64(UInt64(f.data.count)); m.u64(4096); m.u64(0)
            for _ in 0..<6 { m.u64(0) }
            return m
        case .lopen(let fid, _):
            guard let p = file(fid) else { return error(2) }
            opened.insert(fid)
            var m = NinePWire.Message(.rlopen, tag: 0)
            put(&m, qid(p)); m.u32(0)
            return m
        case .lcreate(let fid, let name, _, let mode, _):
            guard let d = file(fid) else { return error(9) }
            guard child(d, name) == nil else { return error(17) }
            let p = nextPath
            nextPath += 1
            files[p] = File(names: [Name(parent: d, name: name)], directory: false, mode: 0o100000 | mode)
            refs[fid] = (p, Name(parent: d, name: name))
            opened.insert(fid)
            var m = NinePWire.Message(.rlcreate, tag: 0)
            put(&m, qid(p)); m.u32(0)
            return m
        case .mkdir(let fid, let name, let mode, _):
            return make(fid, name, directory: true, mode: 0o40000 | mode)
        case .symlink(let fid, let name, let target, _):
            return make(fid, name, directory: false, mode: 0o120777, target: target)
        case .readlink(let fid):
            guard let p = file(fid), let t = files[p]?.target else { return error(22) }
            var m = NinePWire.Message(.rreadlink, tag: 0)
            m.string(t)
            return m
        case .write(let fid, let offset, let count):
            guard let p = file(fid), opened.contains(fid) else { return error(9) }
            let end = Int(offset) + Int(count)
            if files[p]!.data.count < end { files[p]!.data += [UInt8](repeating: 0, count: end - files[p]!.data.count) }
            files[p]!.data.replaceSubrange(Int(offset)..<end, with: payload)
            var m = NinePWire.Message(.rwrite, tag: 0)
            m.u32(count)
            return m
        case .read(let fid, let offset, let count):
            guard let p = file(fid), opened.contains(fid) else { return error(9) }
            let d = files[p]!.data
            let from = min(Int(offset), d.count), to = min(d.count, from + Int(count))
            var m = NinePWire.Message(.rread, tag: 0)
            m.u32(UInt32(to - from)); m.w.bytes += d[from..<to]
            return m
        case .readdir(let fid, let offset, _):
            guard let p = file(fid), opened.contains(fid) else { return error(9) }
            let children = files.filter { $0.key != 1 }.flatMap { f in f.value.names.filter { $0.parent == p }.map { (f.key, $0.name) } }
                .sorted { $0.0 < $1.0 }
            var entries = ByteWriter()
            for (i, c) in children.enumerated() where UInt64(i) >= offset {
                let q = qid(c.0)
                entries.u8(q.type); entries.u32(0); entries.u64(q.path)
                entries.u64(UInt64(i + 1)); entries.u8(files[c.0]!.directory ? 4 : 8)
                entries.u16(UInt16(c.1.count)); entries.bytes += c.1
            }
            var m = NinePWire.Message(.rreaddir, tag: 0)
            m.u32(UInt32(entries.bytes.count)); m.w.bytes += entries.bytes
            return m
        case .unlinkat(let dir, let name, let flags):
            guard let d = file(dir), let c = child(d, name) else { return error(2) }
            if files[c]!.directory, flags & NinePWire.removeDirectory == 0 { return error(21) }
            if !files[c]!.directory, flags & NinePWire.removeDirectory != 0 { return error(20) }
            if files.contains(where: { $0.key != 1 && $0.value.names.contains { $0.parent == c } }) { return error(39) }
            files[c]!.names.removeAll { $0 == Name(parent: d, name: name) }
            return NinePWire.Message(.runlinkat, tag: 0)
        case .link(let dir, let fid, let name):
            guard let d = file(dir), let f = file(fid) else { return error(2) }
            guard child(d, name) == nil else { return error(17) }
            files[f]!.names.append(Name(parent: d, name: name))
            return NinePWire.Message(.rlink, tag: 0)
        case .renameat(let od, let on, let nd, let nn):
            guard let o = file(od), let n = file(nd), let c = child(o, on) else { return error(2) }
            if let existing = child(n, nn) { files[existing]!.names.removeAll { $0 == Name(parent: n, name: nn) } }
            let from = Name(parent: o, name: on), to = Name(parent: n, name: nn)
            files[c]!.names = files[c]!.names.map { $0 == from ? to : $0 }
            // As QEMU does: fids by the old name now go by the new one.
            for (f, r) in refs where r.by == from { refs[f] = (r.file, to) }
            return NinePWire.Message(.rrenameat, tag: 0)
        case .clunk(let fid):
            guard refs.removeValue(forKey: fid) != nil else { return error(9) }
            opened.remove(fid)
            return NinePWire.Message(.rclunk, tag: 0)
        case .setattr(let fid, let a):
            guard let p = file(fid) else { return error(2) }
            if a.valid.contains(.size) { files[p]!.data = Array(files[p]!.data.prefix(Int(a.size))) + [UInt8](repeating: 0, count: max(0, Int(a.size) - files[p]!.data.count)) }
            if a.valid.contains(.mode) { files[p]!.mode = files[p]!.mode & 0o170000 | a.mode & 0o7777 }
            return NinePWire.Message(.rsetattr, tag: 0)
        case .fsync: return NinePWire.Message(.rfsync, tag: 0)
        case .statfs:
            var m = NinePWire.Message(.rstatfs, tag: 0)
            m.u32(0x01021997); m.u32(4096); for _ in 0..<6 { m.u64(100) }; m.u32(255)
            return m
        default:
            return error(95)
        }
    }
}
