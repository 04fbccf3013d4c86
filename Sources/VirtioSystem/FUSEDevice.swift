import Glibc
import SystemPackage
import VirtioCore

/// /dev/fuse as the FUSE protocol uses it: each read takes one whole
/// request from the kernel, each write gives one whole reply. The fd is an
/// open file shared by the supervisor (which only polls it) and the plugin
/// (which reads and answers).
public struct FUSEDevice {
    public let fd: FileDescriptor

    public init(_ fd: FileDescriptor) { self.fd = fd }

    /// A new, unmounted session.
    public static func open() throws -> FUSEDevice {
        FUSEDevice(try FileDescriptor.open("/dev/fuse", .readWrite, options: [.closeOnExec]))
    }

    /// Reads return at once when nothing waits (the flag is the open file's).
    public func setNonBlocking() {
        _ = fcntl(fd.rawValue, F_SETFL, fcntl(fd.rawValue, F_GETFL) | O_NONBLOCK)
    }

    public enum Read: Equatable {
        /// A request of this many bytes is at the start of the buffer.
        case request(Int)
        /// Nothing waits now (or the one that did was interrupted first).
        case nothing
        /// The filesystem is gone (unmounted): nothing more will come.
        case unmounted
    }

    /// The next request into `buffer`, which must hold the largest one the
    /// session allows (else the kernel fails the read with EINVAL).
    public func read(into buffer: inout [UInt8]) throws -> Read {
        try retrying {
            // SAFETY: read(2) writes at most `buffer.count` bytes into the array's own storage.
            buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
        }
    }

    /// The next request, its first `head.count` bytes into `head` and the
    /// rest straight into `slice` of DMA memory (a WRITE's data lands where
    /// the device will read it). Together they must hold the largest request.
    public func read(into head: inout [UInt8], then region: DMARegion, _ slice: DMASlice) throws -> Read {
        try retrying {
            // SAFETY: the first iovec is the array's own storage for its count;
            // the second is `slice`, which `region.pointer` checks lies inside
            // the mapping, for its length. readv(2) writes only within them.
            head.withUnsafeMutableBytes { h in
                var iov = [iovec(iov_base: h.baseAddress, iov_len: h.count),
                           iovec(iov_base: region.pointer(slice), iov_len: slice.length)]
                return iov.withUnsafeMutableBufferPointer { Glibc.readv(fd.rawValue, $0.baseAddress, 2) }
            }
        }
    }

    private func retrying(_ read: () -> Int) throws -> Read {
        while true {
            let n = read()
            if n >= 0 { return .request(n) }
            switch errno {
            case EINTR: continue
            case EAGAIN, ENOENT: return .nothing // ENOENT: interrupted before it was read
            case ENODEV: return .unmounted
            default: throw SystemCallError("read /dev/fuse")
            }
        }
    }

    /// Give the kernel one reply — fuse_out_header, then a body that stays
    /// where it is: the caller's bytes, or a slice of DMA memory (a read's
    /// data where the device wrote it) — in one writev, nothing joined
    /// first. nil, or the errno the kernel refused it with (ENOENT: the
    /// request was interrupted and is no longer waited for).
    public func reply(_ header: [UInt8], _ body: ArraySlice<UInt8> = [], dma: (DMARegion, DMASlice)? = nil) -> Errno? {
        precondition(body.isEmpty || dma == nil, "a FUSE reply's body is either bytes or DMA memory")
        // SAFETY: the iovecs point into the header's and the body's array
        // storage (alive across the call) for exactly their counts, or into
        // a DMA slice `region.pointer` checks lies inside the mapping, for
        // its length; writev(2) only reads them.
        let n = header.withUnsafeBytes { h in
            body.withUnsafeBytes { b in
                var iov = [iovec(iov_base: UnsafeMutableRawPointer(mutating: h.baseAddress), iov_len: h.count)]
                if let (region, slice) = dma {
                    iov.append(iovec(iov_base: region.pointer(slice), iov_len: slice.length))
                } else if !b.isEmpty {
                    iov.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count))
                }
                return iov.withUnsafeMutableBufferPointer { Glibc.writev(fd.rawValue, $0.baseAddress, Int32($0.count)) }
            }
        }
        return n < 0 ? Errno(rawValue: errno) : nil
    }

    /// A share's read-ahead (KiB; the kernel's default is 128): the mount
    /// helper sets the mount's bdi to it and the 9p plugin's INIT answer
    /// offers it (the kernel keeps the smaller), so sequential reads keep
    /// several requests at the server.
    public static let shareReadAheadKiB = 2048

    /// Within `timeoutMS`: whether a request waits (the kernel queues INIT
    /// the moment the filesystem is mounted) and whether the session is
    /// over (POLLERR: not mounted yet, or unmounted and aborted).
    public func poll(timeoutMS: Int32) -> (request: Bool, ended: Bool) {
        guard let e = try? Poll.wait([(fd, true, false)], timeoutMS: timeoutMS).first else { return (false, false) }
        return (e.readable, e.closed)
    }
}
