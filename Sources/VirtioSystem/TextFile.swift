import Glibc
import SystemPackage

/// Small text files of the kernel's (sysfs, procfs): read whole, in one
/// place, so callers do not each open and parse them their own way.
public enum TextFile {
    /// The file's text with surrounding whitespace removed; nil if it cannot
    /// be read or is empty (sysfs attributes are a line each).
    public static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        guard let fd = try? FileDescriptor.open(path, .readOnly, options: .closeOnExec) else { return nil }
        defer { try? fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            guard let n = try? chunk.withUnsafeMutableBytes({ try fd.read(into: $0) }), n > 0 else { break }
            bytes += chunk[0..<n]
        }
        let text = String(decoding: bytes.prefix(limit), as: UTF8.self)
        let trimmed = text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed()
        return trimmed.isEmpty ? nil : String(trimmed)
    }

    /// The value of the first "key:" line (procfs style, e.g. fdinfo), trimmed.
    public static func field(_ key: String, in path: String) -> String? {
        guard let text = read(path) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            let value = line.dropFirst(key.count + 1).filter { !$0.isWhitespace }
            return value.isEmpty ? nil : String(value)
        }
        return nil
    }

    /// Write `value` to a sysfs attribute (a short value: one write(2), as the kernel wants it).
    public static func writeAttribute(_ path: String, _ value: String) throws(Errno) {
        do {
            let fd = try FileDescriptor.open(path, .writeOnly, options: .closeOnExec)
            defer { try? fd.close() }
            _ = try fd.writeAll(Array(value.utf8))
        } catch { throw error as? Errno ?? .ioError }
    }

    /// Replaces `path` with `text` so that a reader sees the old file or the
    /// new one, never half of one: written to a temporary file in the same
    /// folder, flushed, then renamed over it (as the node exporter's
    /// textfile collector asks).
    public static func writeAtomically(_ text: String, to path: String, permissions: FilePermissions = [.ownerReadWrite, .groupRead, .otherRead]) throws(Errno) {
        let temporary = path + ".tmp-\(getpid())"
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(temporary, .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: permissions)
        } catch { throw error as? Errno ?? .ioError }
        do {
            _ = try fd.writeAll(Array(text.utf8))
            guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
            try fd.close()
        } catch {
            try? fd.close()
            unlink(temporary)
            throw error as? Errno ?? .ioError
        }
        guard rename(temporary, path) == 0 else {
            let e = Errno(rawValue: errno)
            unlink(temporary)
            throw e
        }
    }
}
