import Glibc
import SystemPackage

/// Byte-stream I/O on a connected socket that others may share (an NBD
/// connection): no O_NONBLOCK on the open file (that flag would be shared
/// too), so reads and writes are MSG_DONTWAIT; the caller polls and keeps
/// what did not fit. Writes never raise SIGPIPE.
extension UnixSocket {
    /// Read what is there now into `buffer`: the byte count, 0 at end of
    /// file, nil if nothing is waiting.
    public func receiveAvailable(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        guard buffer.count > 0 else { return nil }
        while true {
            // SAFETY: recv writes at most buffer.count bytes into the buffer the caller owns.
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

    /// Send what the socket takes now of `pieces`, in order, as one gather
    /// list (at most IOV_MAX pieces); the byte count (0 if it is full).
    public func sendAvailable(_ pieces: [UnsafeRawBufferPointer]) throws -> Int {
        var vectors = pieces.prefix(Int(UIO_MAXIOV)).filter { $0.count > 0 }
            .map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        guard !vectors.isEmpty else { return 0 }
        while true {
            // SAFETY: the iovecs point into buffers the caller keeps alive for
            // this call; sendmsg only reads them.
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
