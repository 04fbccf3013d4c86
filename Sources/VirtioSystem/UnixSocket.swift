import CVirtioShim
import Glibc
import SystemPackage

/// A unix-domain socket (thin wrapper): socketpairs for supervisor ↔ plugin
/// channels, a listening socket for the control interface, and messages that
/// carry file descriptors (SCM_RIGHTS).
public struct UnixSocket: Sendable {
    public let fd: FileDescriptor
    public init(fd: FileDescriptor) { self.fd = fd }

    /// Largest message the fd-passing calls take or return.
    public static let maxMessage = 1 << 20

    /// A connected pair of SOCK_SEQPACKET sockets (message boundaries kept),
    /// both close-on-exec.
    public static func seqpacketPair() throws -> (UnixSocket, UnixSocket) { try pair(SOCK_SEQPACKET) }

    private static func pair(_ type: __socket_type) throws -> (UnixSocket, UnixSocket) {
        var fds: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, CInt(type.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SystemCallError("socketpair")
        }
        return (UnixSocket(fd: FileDescriptor(rawValue: fds[0])), UnixSocket(fd: FileDescriptor(rawValue: fds[1])))
    }

    /// A connected pair of SOCK_STREAM sockets, both close-on-exec (e.g. an
    /// NBD connection: the kernel gets one end, a plugin the other).
    public static func streamPair() throws -> (UnixSocket, UnixSocket) { try pair(SOCK_STREAM) }

    /// shutdown(2) both directions: the peer reads end-of-file, whoever else holds this socket too.
    public func shutdownBoth() { _ = Glibc.shutdown(fd.rawValue, CInt(SHUT_RDWR)) }

    /// A SOCK_STREAM socket listening at `path` (an old socket file there is replaced).
    public static func listen(path: String, mode: mode_t = 0o666, backlog: CInt = 16) throws -> UnixSocket {
        let s = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue) | CInt(SOCK_NONBLOCK.rawValue), 0)
        guard s >= 0 else { throw SystemCallError("socket") }
        let sock = UnixSocket(fd: FileDescriptor(rawValue: s))
        unlink(path)
        do {
            try withSocketAddress(path) { addr, len in
                guard bind(s, addr, len) == 0 else { throw SystemCallError("bind \(path)") }
            }
            guard chmod(path, mode) == 0 else { throw SystemCallError("chmod \(path)") }
            guard Glibc.listen(s, backlog) == 0 else { throw SystemCallError("listen \(path)") }
        } catch {
            try? sock.fd.close()
            throw error
        }
        return sock
    }

    /// Connect a SOCK_STREAM socket to `path`.
    public static func connect(path: String) throws -> UnixSocket {
        let s = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw SystemCallError("socket") }
        do {
            try withSocketAddress(path) { addr, len in
                guard Glibc.connect(s, addr, len) == 0 else { throw SystemCallError("connect \(path)") }
            }
        } catch {
            Glibc.close(s)
            throw error
        }
        return UnixSocket(fd: FileDescriptor(rawValue: s))
    }

    private static func withSocketAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> Void) throws {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw SystemCallError("socket path too long: \(path)", .fileNameTooLong)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        try withUnsafePointer(to: &addr) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// Accept one connection (close-on-exec; blocking unless `nonBlocking`); nil if none is pending.
    public func accept(nonBlocking: Bool = false) throws -> UnixSocket? {
        let c = Glibc.accept(fd.rawValue, nil, nil)
        if c < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw SystemCallError("accept")
        }
        // accept4 needs _GNU_SOURCE; a single-threaded spawner makes this safe.
        _ = fcntl(c, F_SETFD, FD_CLOEXEC)
        // The listening socket is non-blocking; the connection only if asked.
        let flags = fcntl(c, F_GETFL)
        _ = fcntl(c, F_SETFL, nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
        return UnixSocket(fd: FileDescriptor(rawValue: c))
    }

    /// Read what is there (non-blocking sockets): nil if nothing is (EAGAIN),
    /// empty at end of file.
    public func readAvailable(max: Int) throws -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: max)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, max) }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw SystemCallError("read")
        }
        return Array(buf[0..<n])
    }

    /// Write what the socket takes now (non-blocking sockets); the count, 0 if it is full.
    public func writeAvailable(_ bytes: ArraySlice<UInt8>) throws -> Int {
        let n = bytes.withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
            throw SystemCallError("send")
        }
        return n
    }

    public struct PeerCredentials: Sendable, Hashable {
        public var pid: Int32
        public var uid: UInt32
        public var gid: UInt32
    }

    /// Who is on the other end (SO_PEERCRED): the kernel's word, not the peer's.
    public func peerCredentials() throws -> PeerCredentials {
        var pid: CInt = 0
        var uid: CUnsignedInt = 0
        var gid: CUnsignedInt = 0
        guard cvirtio_peer_credentials(fd.rawValue, &pid, &uid, &gid) == 0 else { throw SystemCallError("SO_PEERCRED") }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }

    /// Send one message with `fds` attached (the fds stay open here).
    public func send(_ bytes: [UInt8], fds: [FileDescriptor] = []) throws {
        let raw = fds.map(\.rawValue)
        let n = bytes.withUnsafeBytes { b in
            raw.withUnsafeBufferPointer { f in
                cvirtio_send_with_fds(fd.rawValue, b.baseAddress, b.count, f.baseAddress, CInt(f.count))
            }
        }
        guard n == bytes.count else { throw SystemCallError("sendmsg") }
    }

    /// Receive one message and the fds attached to it (close-on-exec, owned by
    /// the caller). An empty message with no fds means the peer closed.
    public func receive(maxBytes: Int = 65536, maxFDs: Int = 32) throws -> (bytes: [UInt8], fds: [FileDescriptor]) {
        var buf = [UInt8](repeating: 0, count: maxBytes)
        var fds = [CInt](repeating: -1, count: maxFDs)
        var count: CInt = 0
        let n = buf.withUnsafeMutableBytes { b in
            fds.withUnsafeMutableBufferPointer { f in
                cvirtio_recv_with_fds(fd.rawValue, b.baseAddress, b.count, f.baseAddress, CInt(f.count), &count)
            }
        }
        guard n >= 0 else { throw SystemCallError("recvmsg") }
        return (Array(buf[0..<n]), fds[0..<Int(count)].map { FileDescriptor(rawValue: $0) })
    }

    /// Write all of `bytes` (stream sockets, blocking). A peer that went
    /// away is an error (EPIPE), never SIGPIPE.
    public func writeAll(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemCallError("send")
            }
            done += n
        }
    }

    /// Read until a newline or end of file (stream sockets); at most `limit` bytes.
    public func readLine(limit: Int = UnixSocket.maxMessage) throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = try buf.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) }
            if n == 0 { break }
            out += buf[0..<n]
            if buf[0..<n].contains(UInt8(ascii: "\n")) { break }
        }
        if let nl = out.firstIndex(of: UInt8(ascii: "\n")) { out.removeSubrange(nl...) }
        return out
    }

    public func close() { try? fd.close() }
}
