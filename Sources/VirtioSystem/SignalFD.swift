import CVirtioShim
import Glibc
import SystemPackage

/// Signals as readable events (signalfd): the supervisor's event loop takes
/// SIGTERM, SIGINT, SIGHUP and SIGCHLD this way instead of in handlers.
public struct SignalFD: Sendable {
    public let fd: FileDescriptor

    /// Block `signals` in this thread and receive them on the fd. Children
    /// spawned with `ChildProcess.spawn` get the default mask back.
    public init(_ signals: [CInt]) throws {
        let raw = signals.withUnsafeBufferPointer { cvirtio_signalfd($0.baseAddress, CInt($0.count)) }
        guard raw >= 0 else { throw SystemCallError("signalfd") }
        fd = FileDescriptor(rawValue: raw)
    }

    /// The next pending signal and its sender's pid, nil if none.
    public func next() throws -> (signal: CInt, pid: pid_t)? {
        var pid: CInt = 0
        let s = cvirtio_signalfd_read(fd.rawValue, &pid)
        if s < 0 { throw SystemCallError("signalfd read") }
        return s == 0 ? nil : (s, pid)
    }
}

/// poll(2) over a set of fds: the supervisor's and the plugins' event loops.
public enum Poll {
    /// Wait until one of `fds` is readable (or hung up) or `timeoutMS` passes
    /// (-1: forever). Returns the fds that are ready.
    public static func readable(_ fds: [FileDescriptor], timeoutMS: Int32) throws -> [FileDescriptor] {
        var entries = fds.map { pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0) }
        let n = entries.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), timeoutMS) }
        if n < 0 {
            if errno == EINTR { return [] }
            throw SystemCallError("poll")
        }
        return entries.filter { $0.revents != 0 }.map { FileDescriptor(rawValue: $0.fd) }
    }
}
