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
