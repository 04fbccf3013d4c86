import Glibc
import SystemPackage

/// Byte-stream I/O on a connected socket that others may share (an NBD
/// connection): no O_NONBLOCK on the open file (that flag would be shared
/// too), so reads are MSG_DONTWAIT and writes wait in poll(2) while the
/// socket is full. Writes never raise SIGPIPE.
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

    /// Send every byte of `pieces`, in order, as one gather list; while the
    /// socket is full, wait for room up to `timeoutMS` at a time (a peer
    /// that takes nothing for that long is an error).
    public func sendAll(_ pieces: [UnsafeRawBufferPointer], timeoutMS: Int32 = 30_000) throws {
        var vectors = pieces.filter { $0.count > 0 }.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        var first = 0
        while first < vectors.count {
            let count = min(vectors.count - first, Int(UIO_MAXIOV))
            // SAFETY: the iovecs point into buffers the caller keeps alive for
            // this call; sendmsg only reads them.
            let n = vectors.withUnsafeMutableBufferPointer { v -> Int in
                var message = msghdr()
                message.msg_iov = v.baseAddress! + first
                message.msg_iovlen = count
                return sendmsg(fd.rawValue, &message, CInt(MSG_NOSIGNAL) | CInt(MSG_DONTWAIT))
            }
            if n < 0 {
                if errno == EINTR { continue }
                guard errno == EAGAIN || errno == EWOULDBLOCK else { throw SystemCallError("sendmsg") }
                let ready = try Poll.wait([(fd, true)], timeoutMS: timeoutMS)
                guard ready.contains(where: { $0.writable || $0.closed }) else {
                    throw SystemCallError("sendmsg: the peer took nothing for \(timeoutMS) ms", .timedOut)
                }
                continue
            }
            // Skip what went out; the first piece not fully sent is advanced.
            var sent = n
            while sent > 0, first < vectors.count {
                if sent >= vectors[first].iov_len {
                    sent -= vectors[first].iov_len
                    first += 1
                } else {
                    vectors[first].iov_base = vectors[first].iov_base.map { $0 + sent }
                    vectors[first].iov_len -= sent
                    sent = 0
                }
            }
        }
    }
}
