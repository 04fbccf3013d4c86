import CVirtioShim
import Glibc
import SystemPackage

/// A memfd's memory by ranges, for memory held on purpose (a balloon's
/// pages): allocated when asked, given back to the system when done, and
/// found again from the file alone after a restart.
///
/// SAFETY: the only pointer use is `base + offset` handed to madvise(2),
/// always after `checkRange` kept the range inside the mapping; nothing is
/// read or written through the pointer here.
extension SharedMemory {
    /// Allocate the pages of `offset..<offset+length`, written (zeroed) and
    /// mapped here in one call (MADV_POPULATE_WRITE, Linux 5.14): no fault
    /// per page, and a failure is an error (ENOMEM), not a SIGBUS; on
    /// failure what was allocated is given back. A written page is also one
    /// SEEK_DATA reports (tmpfs counts fallocated, never-written pages as
    /// holes, so fallocate(2) alone would not do — and under emulation it
    /// doubled the cost).
    public func allocate(offset: Int, length: Int) throws {
        try checkRange(offset, length)
        let populateWrite: Int32 = 23 // MADV_POPULATE_WRITE (linux/mman.h)
        guard madvise(base + offset, length, populateWrite) == 0 else {
            let e = SystemCallError("madvise(POPULATE_WRITE)")
            try? release(offset: offset, length: length)
            throw e
        }
    }

    /// Give the pages of the range back to the system (a hole punched: the
    /// memory reads as zeros afterwards and holds nothing).
    public func release(offset: Int, length: Int) throws {
        try checkRange(offset, length)
        guard cvirtio_punch_hole(fd.rawValue, Int64(offset), Int64(length)) == 0 else {
            throw SystemCallError("fallocate(PUNCH_HOLE)")
        }
    }

    /// Drop this process's mapping of the range's pages (MADV_DONTNEED): the
    /// memfd (and any pin) keeps them, but they no longer count in this
    /// process's RSS — which is what the OOM killer weighs.
    public func unmapPages(offset: Int, length: Int) throws {
        try checkRange(offset, length)
        guard madvise(base + offset, length, MADV_DONTNEED) == 0 else { throw SystemCallError("madvise(DONTNEED)") }
    }

    /// Run `body` with the range's (allocated) pages mapped here — faulted in
    /// for reading (MADV_POPULATE_READ, Linux 5.14; a read allocates nothing,
    /// a write could) — and unmapped again afterwards (`unmapPages`).
    public func withPagesMapped<T>(_ range: Range<Int>, _ body: () throws -> T) throws -> T {
        try checkRange(range.lowerBound, range.count)
        let populateRead: Int32 = 22 // MADV_POPULATE_READ (linux/mman.h)
        guard madvise(base + range.lowerBound, range.count, populateRead) == 0 else {
            throw SystemCallError("madvise(POPULATE_READ)")
        }
        defer { try? unmapPages(offset: range.lowerBound, length: range.count) }
        return try body()
    }

    /// The allocated ranges (SEEK_DATA / SEEK_HOLE), in order.
    public func allocatedRanges() throws -> [Range<Int>] {
        var ranges: [Range<Int>] = [], at: Int64 = 0
        while at < Int64(size) {
            let start = cvirtio_seek_data(fd.rawValue, at)
            if start < 0 {
                if errno == ENXIO { break } // no data after `at`
                throw SystemCallError("lseek(SEEK_DATA)")
            }
            let end = cvirtio_seek_hole(fd.rawValue, start)
            guard end > start else { throw SystemCallError("lseek(SEEK_HOLE)") }
            ranges.append(Int(start)..<Int(min(end, Int64(size))))
            at = end
        }
        return ranges
    }

    private func checkRange(_ offset: Int, _ length: Int) throws {
        guard offset >= 0, length > 0, offset <= size - length else {
            throw SystemCallError("range \(offset)+\(length) outside a memfd of \(size) bytes", .invalidArgument)
        }
    }
}

/// /proc/self/pagemap (Documentation/admin-guide/mm/pagemap.rst): the
/// physical frame numbers behind this process's virtual pages. The kernel
/// shows them only to CAP_SYS_ADMIN (zeros otherwise, which `frames` refuses).
public enum PageMap {
    public static let pageSize = 4096
    private static let present: UInt64 = 1 << 63
    private static let frameMask: UInt64 = (1 << 55) - 1

    /// The frame number of each 4 KiB page of `range` (page-aligned offsets
    /// into `memory`); fails if a page is not present or the frame is hidden.
    public static func frames(of memory: SharedMemory, _ range: Range<Int>) throws -> [UInt64] {
        guard sysconf(Int32(_SC_PAGESIZE)) == pageSize else {
            throw SystemCallError("pagemap: page size \(sysconf(Int32(_SC_PAGESIZE))), 4096 expected", .notSupported)
        }
        guard range.lowerBound % pageSize == 0, range.count % pageSize == 0, range.lowerBound >= 0,
              range.upperBound <= memory.size else {
            throw SystemCallError("pagemap: range \(range) not whole pages of the memfd", .invalidArgument)
        }
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open("/proc/self/pagemap", .readOnly, options: .closeOnExec) } catch let e as Errno {
            throw SystemCallError("open /proc/self/pagemap", e)
        }
        defer { try? fd.close() }
        let count = range.count / pageSize
        let firstPage = (UInt(bitPattern: memory.base) + UInt(range.lowerBound)) / UInt(pageSize)
        var entries = [UInt64](repeating: 0, count: count)
        let n = try entries.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: Int64(firstPage) * 8, into: $0) }
        guard n == count * 8 else { throw SystemCallError("pagemap: short read (\(n) of \(count * 8) bytes)", .ioError) }
        return try entries.map { e in
            guard e & present != 0 else { throw SystemCallError("pagemap: a page is not present", .noData) }
            let frame = e & frameMask
            guard frame != 0 else { throw SystemCallError("pagemap: frame numbers hidden (no CAP_SYS_ADMIN?)", .permissionDenied) }
            return frame
        }
    }
}
