import VirtioCore

/// The /dev/fuse protocol as Linux's include/uapi/linux/fuse.h defines it
/// (this plugin speaks 7.31 and accepts any newer kernel minor): requests
/// are fuse_in_header + an opcode's struct + names; replies fuse_out_header
/// + a struct. Only what a read-write filesystem needs (docs/architecture.md,
/// "9P over FUSE"); the rest is answered ENOSYS.
enum FUSEWire {
    static let kernelMajor: UInt32 = 7
    static let minorSpoken: UInt32 = 31
    static let inHeaderSize = 40
    static let outHeaderSize = 16
    static let rootNode: UInt64 = 1

    enum Opcode: UInt32 {
        case lookup = 1, forget = 2, getattr = 3, setattr = 4, readlink = 5, symlink = 6, mknod = 8, mkdir = 9
        case unlink = 10, rmdir = 11, rename = 12, link = 13, open = 14, read = 15, write = 16, statfs = 17
        case release = 18, fsync = 20, setxattr = 21, getxattr = 22, listxattr = 23, removexattr = 24
        case flush = 25, initialize = 26, opendir = 27, readdir = 28, releasedir = 29, fsyncdir = 30
        case getlk = 31, setlk = 32, setlkw = 33, access = 34, create = 35, interrupt = 36, bmap = 37
        case destroy = 38, ioctl = 39, poll = 40, notifyReply = 41, batchForget = 42, fallocate = 43
        case readdirplus = 44, rename2 = 45, lseek = 46, copyFileRange = 47
    }

    /// INIT flags (fuse_init_in/out.flags).
    enum InitFlag {
        static let asyncRead: UInt32 = 1 << 0
        static let atomicOpenTrunc: UInt32 = 1 << 3
        static let bigWrites: UInt32 = 1 << 5
        static let autoInvalData: UInt32 = 1 << 12
        static let doReaddirplus: UInt32 = 1 << 13
        static let readdirplusAuto: UInt32 = 1 << 14
        static let parallelDirops: UInt32 = 1 << 18
        static let maxPages: UInt32 = 1 << 22
    }

    /// fuse_setattr_in.valid.
    enum SetattrValid {
        static let mode: UInt32 = 1 << 0, uid: UInt32 = 1 << 1, gid: UInt32 = 1 << 2, size: UInt32 = 1 << 3
        static let atime: UInt32 = 1 << 4, mtime: UInt32 = 1 << 5, fh: UInt32 = 1 << 6
        static let atimeNow: UInt32 = 1 << 7, mtimeNow: UInt32 = 1 << 8, ctime: UInt32 = 1 << 10
    }

    /// fuse_in_header.
    struct Header: Equatable {
        var length: UInt32
        var opcode: UInt32
        var unique: UInt64
        var nodeID: UInt64
        var uid: UInt32, gid: UInt32, pid: UInt32
    }

    /// One request read from /dev/fuse: its header and the bytes after it
    /// (the kernel's, but checked all the same).
    struct Request {
        var header: Header
        var body: [UInt8]

        /// nil if `bytes` is not a whole request.
        init?(_ bytes: [UInt8]) { self.init(bytes, count: bytes.count) }

        /// From the first `count` bytes of a read buffer (the body copied
        /// once); `elsewhere` more bytes of it were read to another place
        /// (a WRITE's data, straight into DMA memory).
        init?(_ buffer: [UInt8], count: Int, elsewhere: Int = 0) {
            guard count >= inHeaderSize, count <= buffer.count, elsewhere >= 0 else { return nil }
            var r = ByteReader(bytes: buffer)
            header = Header(length: r.u32(), opcode: r.u32(), unique: r.u64(), nodeID: r.u64(), uid: r.u32(), gid: r.u32(), pid: r.u32())
            guard Int(header.length) == count + elsewhere else { return nil }
            body = Array(buffer[inHeaderSize..<count])
        }

        /// fuse_in_header + fuse_write_in: what a WRITE has before its data.
        static let writeHeadSize = inHeaderSize + 40
        /// fuse_write_in.size, when `head` starts a WRITE.
        static func writeSize(_ head: [UInt8]) -> Int? {
            guard head.count >= writeHeadSize else { return nil }
            var r = ByteReader(bytes: head, at: 4)
            guard r.u32() == Opcode.write.rawValue else { return nil }
            r.at = inHeaderSize + 16
            return Int(r.u32())
        }

        var opcode: Opcode? { Opcode(rawValue: header.opcode) }

        /// A little-endian field of the body, or nil past its end.
        func u32(_ at: Int) -> UInt32? {
            guard at >= 0, at + 4 <= body.count else { return nil }
            var r = ByteReader(bytes: body, at: at)
            return r.u32()
        }
        func u64(_ at: Int) -> UInt64? {
            guard at >= 0, at + 8 <= body.count else { return nil }
            var r = ByteReader(bytes: body, at: at)
            return r.u64()
        }
        /// The NUL-terminated names from `at` on (one for LOOKUP, two for RENAME…).
        func names(from at: Int, count: Int) -> [[UInt8]]? {
            guard at >= 0, at <= body.count else { return nil }
            let parts = body[at...].split(separator: 0, maxSplits: count, omittingEmptySubsequences: false)
            guard parts.count > count else { return nil }
            let names = parts.prefix(count).map(Array.init)
            guard names.allSatisfy({ !$0.isEmpty && $0.count <= 255 && !$0.contains(UInt8(ascii: "/")) }) else { return nil }
            return names
        }
        /// The data after `at` (WRITE's payload).
        func data(from at: Int, count: Int) -> ArraySlice<UInt8>? {
            guard at >= 0, count >= 0, at + count <= body.count else { return nil }
            return body[at..<(at + count)]
        }
    }

    /// A reply: fuse_out_header (error is a negative errno, 0 for success),
    /// then the body — apart, so a read's data is written to /dev/fuse from
    /// where the 9P reply holds it instead of being joined to the header first.
    struct Reply {
        var header: [UInt8]
        var body: MessageBytes
        /// Header and body as one array (a body still in DMA memory is left out).
        var bytes: [UInt8] {
            if case .array(let b) = body { header + b } else { header }
        }
    }

    static func reply(unique: UInt64, error: Int32 = 0, _ body: MessageBytes = .array([])) -> Reply {
        var w = ByteWriter()
        w.u32(UInt32(outHeaderSize + body.count))
        w.u32(UInt32(bitPattern: error == 0 ? 0 : -abs(error)))
        w.u64(unique)
        return Reply(header: w.bytes, body: body)
    }

    /// fuse_attr (88 bytes) for a 9P file's attributes.
    static func attr(_ a: NinePWire.Attributes, into w: inout ByteWriter) {
        w.u64(a.qid.path)                 // ino
        w.u64(a.size)
        w.u64(a.blocks)
        w.u64(a.atime.sec); w.u64(a.mtime.sec); w.u64(a.ctime.sec)
        w.u32(UInt32(truncatingIfNeeded: a.atime.nsec)); w.u32(UInt32(truncatingIfNeeded: a.mtime.nsec))
        w.u32(UInt32(truncatingIfNeeded: a.ctime.nsec))
        w.u32(a.mode)
        w.u32(UInt32(truncatingIfNeeded: min(a.nlink, UInt64(UInt32.max))))
        w.u32(a.uid); w.u32(a.gid)
        w.u32(encodeDevice(a.rdev))
        w.u32(UInt32(truncatingIfNeeded: a.blockSize == 0 ? 4096 : min(a.blockSize, 1 << 20)))
        w.u32(0)                          // flags
    }

    /// The kernel's new_encode_dev for a 9P rdev (Linux's dev_t, as the server's stat gives it).
    static func encodeDevice(_ rdev: UInt64) -> UInt32 {
        // glibc's dev_t: major bits 8..19 and 32..43, minor bits 0..7 and 20..31.
        let major = UInt32(truncatingIfNeeded: (rdev >> 8) & 0xfff | (rdev >> 32) & ~0xfff)
        let minor = UInt32(truncatingIfNeeded: rdev & 0xff | (rdev >> 12) & ~0xff)
        return (minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)
    }

    /// Seconds and nanoseconds as fuse_*_out's valid fields.
    struct Validity {
        var seconds: UInt64
        var nanoseconds: UInt32
        static let entries = Validity(seconds: 1, nanoseconds: 0)
        static let attributes = Validity(seconds: 1, nanoseconds: 0)
        static let none = Validity(seconds: 0, nanoseconds: 0)
    }

    /// fuse_entry_out (128 bytes).
    static func entry(node: UInt64, _ a: NinePWire.Attributes, entryValid: Validity = .entries,
                      attrValid: Validity = .attributes, into w: inout ByteWriter) {
        w.u64(node); w.u64(0)  // nodeid, generation
        w.u64(entryValid.seconds); w.u64(attrValid.seconds)
        w.u32(entryValid.nanoseconds); w.u32(attrValid.nanoseconds)
        attr(a, into: &w)
    }

    static func entry(node: UInt64, _ a: NinePWire.Attributes) -> [UInt8] {
        var w = ByteWriter()
        entry(node: node, a, into: &w)
        return w.bytes
    }

    /// fuse_attr_out (104 bytes).
    static func attrOut(_ a: NinePWire.Attributes) -> [UInt8] {
        var w = ByteWriter()
        w.u64(Validity.attributes.seconds); w.u32(Validity.attributes.nanoseconds); w.u32(0)
        attr(a, into: &w)
        return w.bytes
    }

    /// fuse_open_out.
    static func openOut(handle: UInt64, flags: UInt32 = 0) -> [UInt8] {
        var w = ByteWriter()
        w.u64(handle); w.u32(flags); w.u32(0)
        return w.bytes
    }

    /// fuse_kstatfs inside fuse_statfs_out (80 bytes).
    static func statfsOut(_ s: NinePWire.FileSystemStats) -> [UInt8] {
        var w = ByteWriter()
        w.u64(s.blocks); w.u64(s.blocksFree); w.u64(s.blocksAvailable); w.u64(s.files); w.u64(s.filesFree)
        w.u32(s.blockSize); w.u32(s.nameLength); w.u32(s.blockSize); w.u32(0)
        w.zeros(24)
        return w.bytes
    }

    /// fuse_write_out.
    static func writeOut(_ size: UInt32) -> [UInt8] {
        var w = ByteWriter()
        w.u32(size); w.u32(0)
        return w.bytes
    }

    /// fuse_init_out (64 bytes, as for minor >= 23).
    static func initOut(minor: UInt32, maxReadahead: UInt32, flags: UInt32, maxWrite: UInt32, maxPages: UInt16) -> [UInt8] {
        var w = ByteWriter()
        w.u32(kernelMajor); w.u32(minor); w.u32(maxReadahead); w.u32(flags)
        w.u16(64); w.u16(48)  // max_background, congestion_threshold
        w.u32(maxWrite)
        w.u32(1)              // time_gran: nanoseconds
        w.u16(maxPages); w.u16(0)
        w.u32(0)              // flags2
        w.zeros(28)
        return w.bytes
    }

    /// One fuse_dirent (padded to 8 bytes); its size, or nil if it does not fit in `room`.
    static func dirent(ino: UInt64, offset: UInt64, type: UInt8, name: [UInt8], into w: inout ByteWriter) {
        w.u64(ino); w.u64(offset); w.u32(UInt32(name.count)); w.u32(UInt32(type))
        w.bytes += name
        w.zeros(padding(24 + name.count))
    }

    static func direntSize(_ name: [UInt8]) -> Int { 24 + name.count + padding(24 + name.count) }
    /// fuse_direntplus: fuse_entry_out then fuse_dirent.
    static func direntplusSize(_ name: [UInt8]) -> Int { 128 + direntSize(name) }
    static func padding(_ n: Int) -> Int { (8 - n % 8) % 8 }
}
