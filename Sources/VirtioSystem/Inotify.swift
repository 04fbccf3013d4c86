import CVirtioShim
import Glibc
import SystemPackage

/// An inotify instance (inotify(7)): file events as a pollable fd,
/// close-on-exec and non-blocking. Used to notice a process opening a
/// terminal's slave (/dev/pts/N), which the master side cannot see.
public final class Inotify {
    public let fd: FileDescriptor

    public init() throws {
        let raw = cvirtio_inotify_init()
        guard raw >= 0 else { throw SystemCallError("inotify_init1") }
        fd = FileDescriptor(rawValue: raw)
    }

    public static var opened: UInt32 { cvirtio_IN_OPEN() }

    /// Watch `path`; the watch descriptor names it in events.
    public func watch(_ path: String, events: UInt32) throws -> Int32 {
        let wd = cvirtio_inotify_add_watch(fd.rawValue, path, events)
        guard wd >= 0 else { throw SystemCallError("inotify_add_watch \(path)") }
        return wd
    }

    public func unwatch(_ wd: Int32) { _ = cvirtio_inotify_rm_watch(fd.rawValue, wd) }

    /// The watch descriptors of every event waiting (none when there are none).
    public func drain() -> [Int32] {
        var found: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            // SAFETY: read(2) writes at most `buffer.count` bytes into the
            // array; events are read only below `n`, each header whole
            // (offset + 16 <= n), unaligned loads from the array's bytes.
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            guard n > 0 else { return found }
            // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[]; } (16 bytes + len).
            var offset = 0
            while offset + 16 <= n {
                let wd = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: Int32.self) }
                let len = buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self) }
                found.append(wd)
                offset += 16 + Int(len)
            }
        }
    }

    public func close() { try? fd.close() }
}
