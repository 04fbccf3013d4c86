import VirtioCore

/// 9P2000.L messages (the protocol Linux's v9fs and QEMU's virtio-9p speak).
/// virtio 1.2 gives the 9P transport a device ID (9, §5) and no section of
/// its own: a T message goes in the device-readable part of a chain, room
/// for the R message in the writable part, as Linux's net/9p/trans_virtio.c does. Every
/// message is size[4] type[1] tag[2] and a body; strings are len[2] bytes.
enum NinePWire {
    static let version = "9P2000.L"
    static let noTag: UInt16 = 0xffff
    static let noFid: UInt32 = 0xffff_ffff
    /// size[4] type[1] tag[2].
    static let headerSize = 7
    /// Rread's header before the data: size type tag count[4].
    static let readHeaderSize = 11
    /// Twrite's header before the data: size type tag fid[4] offset[8] count[4].
    static let writeHeaderSize = 23

    enum MessageType: UInt8 {
        case rlerror = 7
        case tstatfs = 8, rstatfs = 9
        case tlopen = 12, rlopen = 13
        case tlcreate = 14, rlcreate = 15
        case tsymlink = 16, rsymlink = 17
        case tmknod = 18, rmknod = 19
        case treadlink = 22, rreadlink = 23
        case tgetattr = 24, rgetattr = 25
        case tsetattr = 26, rsetattr = 27
        case treaddir = 40, rreaddir = 41
        case tfsync = 50, rfsync = 51
        case tlink = 70, rlink = 71
        case tmkdir = 72, rmkdir = 73
        case trenameat = 74, rrenameat = 75
        case tunlinkat = 76, runlinkat = 77
        case tversion = 100, rversion = 101
        case tattach = 104, rattach = 105
        case tflush = 108, rflush = 109
        case twalk = 110, rwalk = 111
        case tread = 116, rread = 117
        case twrite = 118, rwrite = 119
        case tclunk = 120, rclunk = 121
    }

    /// Tgetattr's request mask: everything of P9_GETATTR_BASIC.
    static let getattrBasic: UInt64 = 0x7ff
    /// Tunlinkat's flag for a directory (AT_REMOVEDIR).
    static let removeDirectory: UInt32 = 0x200
    /// Most names one Twalk carries (MAXWELEM).
    static let maxWalkNames = 16

    /// Tsetattr's valid bits (P9_ATTR_*).
    struct SetattrValid: OptionSet {
        let rawValue: UInt32
        static let mode = SetattrValid(rawValue: 0x1)
        static let uid = SetattrValid(rawValue: 0x2)
        static let gid = SetattrValid(rawValue: 0x4)
        static let size = SetattrValid(rawValue: 0x8)
        static let atime = SetattrValid(rawValue: 0x10)
        static let mtime = SetattrValid(rawValue: 0x20)
        static let ctime = SetattrValid(rawValue: 0x40)
        static let atimeSet = SetattrValid(rawValue: 0x80)
        static let mtimeSet = SetattrValid(rawValue: 0x100)
    }

    /// A file's identity on the server: type[1] version[4] path[8].
    struct Qid: Codable, Equatable, Hashable {
        var type: UInt8
        var version: UInt32
        var path: UInt64
        static let directory: UInt8 = 0x80
        static let symlink: UInt8 = 0x02
        var isDirectory: Bool { type & Self.directory != 0 }
    }

    /// Rgetattr's fields.
    struct Attributes: Equatable {
        var valid: UInt64 = 0
        var qid = Qid(type: 0, version: 0, path: 0)
        var mode: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        var nlink: UInt64 = 0, rdev: UInt64 = 0, size: UInt64 = 0, blockSize: UInt64 = 0, blocks: UInt64 = 0
        var atime: (sec: UInt64, nsec: UInt64) = (0, 0)
        var mtime: (sec: UInt64, nsec: UInt64) = (0, 0)
        var ctime: (sec: UInt64, nsec: UInt64) = (0, 0)

        static func == (a: Attributes, b: Attributes) -> Bool {
            a.valid == b.valid && a.qid == b.qid && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid
                && a.nlink == b.nlink && a.rdev == b.rdev && a.size == b.size && a.blockSize == b.blockSize
                && a.blocks == b.blocks && a.atime == b.atime && a.mtime == b.mtime && a.ctime == b.ctime
        }
    }

    /// Tsetattr's fields.
    struct SetAttributes {
        var valid: SetattrValid = []
        var mode: UInt32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        var size: UInt64 = 0
        var atime: (sec: UInt64, nsec: UInt64) = (0, 0)
        var mtime: (sec: UInt64, nsec: UInt64) = (0, 0)
    }

    struct FileSystemStats: Equatable {
        var type: UInt32, blockSize: UInt32
        var blocks: UInt64, blocksFree: UInt64, blocksAvailable: UInt64
        var files: UInt64, filesFree: UInt64, fsid: UInt64
        var nameLength: UInt32
    }

    /// One Rreaddir entry.
    struct DirectoryEntry: Equatable {
        var qid: Qid
        /// The offset to ask for the entries after this one.
        var offset: UInt64
        var type: UInt8
        var name: [UInt8]
    }

    // MARK: T messages

    /// A T message being built: the header is filled in by `finish`.
    struct Message {
        var w = ByteWriter()
        init(_ type: MessageType, tag: UInt16) {
            w.u32(0)
            w.u8(type.rawValue)
            w.u16(tag)
        }
        mutating func u8(_ v: UInt8) { w.u8(v) }
        mutating func u16(_ v: UInt16) { w.u16(v) }
        mutating func u32(_ v: UInt32) { w.u32(v) }
        mutating func u64(_ v: UInt64) { w.u64(v) }
        mutating func string(_ s: [UInt8]) {
            w.u16(UInt16(min(s.count, Int(UInt16.max))))
            w.bytes += s.prefix(Int(UInt16.max))
        }
        mutating func string(_ s: String) { string(Array(s.utf8)) }
        /// The message with its size filled in.
        func finish(extra: Int = 0) -> [UInt8] {
            var b = w.bytes
            let size = UInt32(b.count + extra)
            b[0] = UInt8(size & 0xff); b[1] = UInt8(size >> 8 & 0xff)
            b[2] = UInt8(size >> 16 & 0xff); b[3] = UInt8(size >> 24)
            return b
        }
    }

    /// A request: what the client sends, independent of its tag.
    enum Request {
        case version(msize: UInt32)
        case attach(fid: UInt32, uname: String, aname: String, uid: UInt32)
        case walk(fid: UInt32, newFid: UInt32, names: [[UInt8]])
        case getattr(fid: UInt32)
        case setattr(fid: UInt32, SetAttributes)
        case lopen(fid: UInt32, flags: UInt32)
        case lcreate(fid: UInt32, name: [UInt8], flags: UInt32, mode: UInt32, gid: UInt32)
        case symlink(fid: UInt32, name: [UInt8], target: [UInt8], gid: UInt32)
        case mknod(fid: UInt32, name: [UInt8], mode: UInt32, major: UInt32, minor: UInt32, gid: UInt32)
        case readlink(fid: UInt32)
        case read(fid: UInt32, offset: UInt64, count: UInt32)
        /// The data follows the header (`writeHeaderSize`); it is placed by the caller.
        case write(fid: UInt32, offset: UInt64, count: UInt32)
        case readdir(fid: UInt32, offset: UInt64, count: UInt32)
        case fsync(fid: UInt32, dataOnly: Bool)
        case link(directory: UInt32, fid: UInt32, name: [UInt8])
        case mkdir(fid: UInt32, name: [UInt8], mode: UInt32, gid: UInt32)
        case renameat(oldDirectory: UInt32, oldName: [UInt8], newDirectory: UInt32, newName: [UInt8])
        case unlinkat(directory: UInt32, name: [UInt8], flags: UInt32)
        case statfs(fid: UInt32)
        case flush(oldTag: UInt16)
        case clunk(fid: UInt32)

        /// The R type that answers it.
        var replyType: MessageType {
            switch self {
            case .version: .rversion
            case .attach: .rattach
            case .walk: .rwalk
            case .getattr: .rgetattr
            case .setattr: .rsetattr
            case .lopen: .rlopen
            case .lcreate: .rlcreate
            case .symlink: .rsymlink
            case .mknod: .rmknod
            case .readlink: .rreadlink
            case .read: .rread
            case .write: .rwrite
            case .readdir: .rreaddir
            case .fsync: .rfsync
            case .link: .rlink
            case .mkdir: .rmkdir
            case .renameat: .rrenameat
            case .unlinkat: .runlinkat
            case .statfs: .rstatfs
            case .flush: .rflush
            case .clunk: .rclunk
            }
        }

        /// The message's bytes; for `write`, its header only (size counting
        /// `count` data bytes that follow).
        func encode(tag: UInt16) -> [UInt8] {
            switch self {
            case .version(let msize):
                var m = Message(.tversion, tag: noTag)
                m.u32(msize); m.string(NinePWire.version)
                return m.finish()
            case .attach(let fid, let uname, let aname, let uid):
                var m = Message(.tattach, tag: tag)
                m.u32(fid); m.u32(noFid); m.string(uname); m.string(aname); m.u32(uid)
                return m.finish()
            case .walk(let fid, let newFid, let names):
                var m = Message(.twalk, tag: tag)
                m.u32(fid); m.u32(newFid); m.u16(UInt16(names.count))
                for n in names { m.string(n) }
                return m.finish()
            case .getattr(let fid):
                var m = Message(.tgetattr, tag: tag)
                m.u32(fid); m.u64(getattrBasic)
                return m.finish()
            case .setattr(let fid, let a):
                var m = Message(.tsetattr, tag: tag)
                m.u32(fid); m.u32(a.valid.rawValue); m.u32(a.mode); m.u32(a.uid); m.u32(a.gid); m.u64(a.size)
                m.u64(a.atime.sec); m.u64(a.atime.nsec); m.u64(a.mtime.sec); m.u64(a.mtime.nsec)
                return m.finish()
            case .lopen(let fid, let flags):
                var m = Message(.tlopen, tag: tag)
                m.u32(fid); m.u32(flags)
                return m.finish()
            case .lcreate(let fid, let name, let flags, let mode, let gid):
                var m = Message(.tlcreate, tag: tag)
                m.u32(fid); m.string(name); m.u32(flags); m.u32(mode); m.u32(gid)
                return m.finish()
            case .symlink(let fid, let name, let target, let gid):
                var m = Message(.tsymlink, tag: tag)
                m.u32(fid); m.string(name); m.string(target); m.u32(gid)
                return m.finish()
            case .mknod(let fid, let name, let mode, let major, let minor, let gid):
                var m = Message(.tmknod, tag: tag)
                m.u32(fid); m.string(name); m.u32(mode); m.u32(major); m.u32(minor); m.u32(gid)
                return m.finish()
            case .readlink(let fid):
                var m = Message(.treadlink, tag: tag)
                m.u32(fid)
                return m.finish()
            case .read(let fid, let offset, let count):
                var m = Message(.tread, tag: tag)
                m.u32(fid); m.u64(offset); m.u32(count)
                return m.finish()
            case .write(let fid, let offset, let count):
                var m = Message(.twrite, tag: tag)
                m.u32(fid); m.u64(offset); m.u32(count)
                return m.finish(extra: Int(count))
            case .readdir(let fid, let offset, let count):
                var m = Message(.treaddir, tag: tag)
                m.u32(fid); m.u64(offset); m.u32(count)
                return m.finish()
            case .fsync(let fid, let dataOnly):
                var m = Message(.tfsync, tag: tag)
                m.u32(fid); m.u32(dataOnly ? 1 : 0)
                return m.finish()
            case .link(let directory, let fid, let name):
                var m = Message(.tlink, tag: tag)
                m.u32(directory); m.u32(fid); m.string(name)
                return m.finish()
            case .mkdir(let fid, let name, let mode, let gid):
                var m = Message(.tmkdir, tag: tag)
                m.u32(fid); m.string(name); m.u32(mode); m.u32(gid)
                return m.finish()
            case .renameat(let oldDirectory, let oldName, let newDirectory, let newName):
                var m = Message(.trenameat, tag: tag)
                m.u32(oldDirectory); m.string(oldName); m.u32(newDirectory); m.string(newName)
                return m.finish()
            case .unlinkat(let directory, let name, let flags):
                var m = Message(.tunlinkat, tag: tag)
                m.u32(directory); m.string(name); m.u32(flags)
                return m.finish()
            case .statfs(let fid):
                var m = Message(.tstatfs, tag: tag)
                m.u32(fid)
                return m.finish()
            case .flush(let oldTag):
                var m = Message(.tflush, tag: tag)
                m.u16(oldTag)
                return m.finish()
            case .clunk(let fid):
                var m = Message(.tclunk, tag: tag)
                m.u32(fid)
                return m.finish()
            }
        }
    }

    // MARK: R messages

    /// What the device wrote, checked: it never reads beyond what the device
    /// says it wrote nor beyond the buffer.
    struct Reader {
        let bytes: [UInt8]
        var at: Int
        /// Where the message ends in `bytes`.
        let end: Int
        /// The message goes on past `end` in DMA memory, not copied (a read's data).
        var tail: DMASlice?
        init(_ bytes: [UInt8], at: Int = 0, end: Int? = nil) {
            self.bytes = bytes
            self.at = at
            self.end = min(end ?? bytes.count, bytes.count)
        }
        var remaining: Int { end - at }
        /// The next `n` bytes: where they are in `bytes`, or (all of them) in `tail`.
        mutating func data(_ n: Int) throws(NinePError) -> MessageBytes {
            if let tail, remaining == 0 {
                guard n == tail.length else { throw .malformed("\(n) bytes of data in a message with \(tail.length) more") }
                self.tail = nil
                return .dma(tail)
            }
            return .array(try slice(n))
        }
        mutating func need(_ n: Int) throws(NinePError) { if n < 0 || remaining < n { throw .malformed("ends early") } }
        mutating func u8() throws(NinePError) -> UInt8 { try need(1); defer { at += 1 }; return bytes[at] }
        mutating func u16() throws(NinePError) -> UInt16 { try need(2); return UInt16(try u8()) | UInt16(try u8()) << 8 }
        mutating func u32() throws(NinePError) -> UInt32 { try need(4); return UInt32(try u16()) | UInt32(try u16()) << 16 }
        mutating func u64() throws(NinePError) -> UInt64 { try need(8); return UInt64(try u32()) | UInt64(try u32()) << 32 }
        mutating func take(_ n: Int) throws(NinePError) -> [UInt8] { Array(try slice(n)) }
        /// The next `n` bytes where they are (a read's data, not copied).
        mutating func slice(_ n: Int) throws(NinePError) -> ArraySlice<UInt8> {
            try need(n)
            defer { at += n }
            return bytes[at..<(at + n)]
        }
        mutating func string() throws(NinePError) -> [UInt8] { try take(Int(try u16())) }
        mutating func qid() throws(NinePError) -> Qid { Qid(type: try u8(), version: try u32(), path: try u64()) }
    }

    /// A reply's header, checked against what the device says it wrote.
    struct ReplyHeader: Equatable {
        var size: Int
        var type: UInt8
        var tag: UInt16
    }

    /// The header of a reply the device wrote `written` bytes of (`bytes`
    /// holds its start: all of it, or less when the rest stays in DMA memory).
    static func header(_ bytes: [UInt8], written: Int? = nil) throws(NinePError) -> ReplyHeader {
        var r = Reader(bytes)
        let written = written ?? bytes.count
        let size = Int(try r.u32()), type = try r.u8(), tag = try r.u16()
        guard size >= headerSize, size <= written, written >= bytes.count else {
            throw .malformed("a reply of \(size) bytes in \(written) written")
        }
        return ReplyHeader(size: size, type: type, tag: tag)
    }

    /// The body of a reply (after its header), or the error an Rlerror holds.
    /// Bytes past `bytes` (up to the reply's size) are the caller's to find.
    static func body(_ bytes: [UInt8], written: Int? = nil, expecting type: MessageType) throws(NinePError) -> Reader {
        let h = try header(bytes, written: written)
        var r = Reader(bytes, at: headerSize, end: h.size)
        if h.type == MessageType.rlerror.rawValue {
            let code = try r.u32()
            // An errno from the server: only within what Linux calls errors.
            throw .server(code > 0 && code < 4096 ? Int32(code) : 5)
        }
        guard h.type == type.rawValue else { throw .malformed("type \(h.type) where \(type) (\(type.rawValue)) was due") }
        return r
    }

    static func attributes(_ r: inout Reader) throws(NinePError) -> Attributes {
        var a = Attributes()
        a.valid = try r.u64(); a.qid = try r.qid()
        a.mode = try r.u32(); a.uid = try r.u32(); a.gid = try r.u32()
        a.nlink = try r.u64(); a.rdev = try r.u64(); a.size = try r.u64(); a.blockSize = try r.u64(); a.blocks = try r.u64()
        a.atime = (try r.u64(), try r.u64()); a.mtime = (try r.u64(), try r.u64()); a.ctime = (try r.u64(), try r.u64())
        return a
    }

    static func statfs(_ r: inout Reader) throws(NinePError) -> FileSystemStats {
        FileSystemStats(type: try r.u32(), blockSize: try r.u32(), blocks: try r.u64(), blocksFree: try r.u64(),
                        blocksAvailable: try r.u64(), files: try r.u64(), filesFree: try r.u64(), fsid: try r.u64(),
                        nameLength: try r.u32())
    }

    /// Rreaddir's entries, in order.
    static func directoryEntries(_ r: inout Reader) throws(NinePError) -> [DirectoryEntry] {
        let count = Int(try r.u32())
        try r.need(count)
        var e = Reader(r.bytes, at: r.at, end: r.at + count)
        r.at += count
        var entries: [DirectoryEntry] = []
        while e.remaining > 0 {
            entries.append(DirectoryEntry(qid: try e.qid(), offset: try e.u64(), type: try e.u8(), name: try e.string()))
        }
        return entries
    }

    /// Twalk's names for a path, `maxWalkNames` at a time.
    static func walkChunks(_ names: [[UInt8]]) -> [[[UInt8]]] {
        stride(from: 0, to: names.count, by: maxWalkNames).map { Array(names[$0..<min(names.count, $0 + maxWalkNames)]) }
    }
}

/// A 9P request that failed: the server's errno, or a reply that makes no sense.
enum NinePError: Error, Equatable, CustomStringConvertible {
    case server(Int32)
    case malformed(String)
    /// The request was never answered (the device went away, a reset).
    case lost

    /// The errno a FUSE reply carries for it.
    var errno: Int32 {
        switch self {
        case .server(let e): e
        case .malformed: 5 // EIO
        case .lost: 5
        }
    }

    var description: String {
        switch self {
        case .server(let e): "error \(e)"
        case .malformed(let why): "malformed reply: \(why)"
        case .lost: "no reply"
        }
    }
}
