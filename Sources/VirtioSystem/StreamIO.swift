import Glibc
import SystemPackage
import VirtioCore

/// Byte-stream I/O on a connected socket that others may share (an NBD
/// connection): no O_NONBLOCK on the open file (that flag would be shared
/// too), so reads and writes are MSG_DONTWAIT; the caller polls and keeps
/// what did not fit. Writes never raise SIGPIPE.
extension UnixSocket {
    /// Read what is waiting, at most `count` bytes: nil if nothing is there
    /// now, empty at end of file.
    public func receiveAvailable(upTo count: Int) throws -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        guard let n = try bytes.withUnsafeMutableBytes({ try receive($0) }) else { return nil }
        return Array(bytes.prefix(n))
    }

    /// Read what is waiting straight into `slice` of DMA memory: the byte
    /// count, 0 at end of file, nil if nothing is there now.
    public func receiveAvailable(into region: DMARegion, _ slice: DMASlice) throws -> Int? {
        // SAFETY: `region.pointer` checks the slice lies in the mapping; recv
        // writes at most `slice.length` bytes there.
        try receive(UnsafeMutableRawBufferPointer(start: region.pointer(slice), count: slice.length))
    }

    private func receive(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard buffer.count > 0 else { return nil }
        while true {
            let n = recv(fd.rawValue, buffer.baseAddress, buffer.count, CInt(MSG_DONTWAIT))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw SystemCallError("recv")
        }
    }

    /// Whether the peer has hung up or shut its sending side down (nothing consumed).
    public var peerClosed: Bool {
        let rdhup: Int16 = 0x2000 // POLLRDHUP (a _GNU_SOURCE name Glibc's module does not export)
        var entry = pollfd(fd: fd.rawValue, events: rdhup, revents: 0)
        guard Glibc.poll(&entry, 1, 0) == 1 else { return false }
        return entry.revents & (rdhup | Int16(POLLHUP) | Int16(POLLERR)) != 0
    }

    /// Send what the socket takes now of `pieces` — bytes of the caller's,
    /// or DMA memory sent straight from the mapping — as one gather list,
    /// leaving out the first `skipping` bytes (what an earlier call sent).
    /// The byte count, 0 if the socket is full.
    public func sendAvailable(_ pieces: [StreamPiece], from region: DMARegion, skipping: Int = 0) throws -> Int {
        // The callers' own bytes, laid end to end so one buffer outlives the call.
        var storage: [UInt8] = []
        for case .bytes(let b) in pieces { storage += b }
        return try storage.withUnsafeBytes { own -> Int in
            var vectors: [iovec] = []
            var skip = skipping, at = 0
            for piece in pieces where vectors.count < Int(UIO_MAXIOV) {
                // SAFETY: own bytes lie in `storage` (kept alive by this
                // closure); DMA slices are checked by `region.pointer`, and
                // at most their length is sent. sendmsg only reads them.
                let (base, count): (UnsafeRawPointer, Int)
                switch piece {
                case .bytes(let b):
                    (base, count) = (own.baseAddress! + at, b.count)
                    at += b.count
                case .dma(let slice):
                    (base, count) = (UnsafeRawPointer(region.pointer(slice)), slice.length)
                }
                if skip >= count { skip -= count; continue }
                vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: base + skip), iov_len: count - skip))
                skip = 0
            }
            guard !vectors.isEmpty else { return 0 }
            while true {
                let n = vectors.withUnsafeMutableBufferPointer { v -> Int in
                    var message = msghdr()
                    message.msg_iov = v.baseAddress
                    message.msg_iovlen = v.count
                    return sendmsg(fd.rawValue, &message, CInt(MSG_NOSIGNAL) | CInt(MSG_DONTWAIT))
                }
                if n >= 0 { return n }
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return 0 }
                throw SystemCallError("sendmsg")
            }
        }
    }
}

/// One piece of what `sendAvailable` sends.
public enum StreamPiece {
    case bytes([UInt8])
    /// The whole slice, straight from DMA memory.
    case dma(DMASlice)
}
