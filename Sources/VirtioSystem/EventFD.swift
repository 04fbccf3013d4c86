import CVirtioShim
import Glibc
import SystemPackage

/// An eventfd (a kernel counter that can be polled): MSI-X vectors arrive on
/// them through VFIO, and processes wake each other with them.
public struct EventFD: Sendable, Hashable {
    public let fd: FileDescriptor
    public init(fd: FileDescriptor) { self.fd = fd }

    /// A new eventfd, close-on-exec; non-blocking unless `blocking`.
    public init(blocking: Bool = false) throws {
        let flags = cvirtio_EFD_CLOEXEC() | (blocking ? 0 : cvirtio_EFD_NONBLOCK())
        let raw = cvirtio_eventfd(0, flags)
        guard raw >= 0 else { throw SystemCallError("eventfd") }
        fd = FileDescriptor(rawValue: raw)
    }

    /// Add `value` to the counter (wakes a poller).
    public func signal(_ value: UInt64 = 1) throws {
        var v = value
        let n = withUnsafeBytes(of: &v) { Glibc.write(fd.rawValue, $0.baseAddress, 8) }
        guard n == 8 else { throw SystemCallError("eventfd write") }
    }

    /// Read and clear the counter; 0 if nothing was signalled (non-blocking fd).
    public func consume() throws -> UInt64 {
        var v: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &v) { Glibc.read(fd.rawValue, $0.baseAddress, 8) }
        if n < 0 {
            if errno == EAGAIN { return 0 }
            throw SystemCallError("eventfd read")
        }
        return v
    }

    public func close() { try? fd.close() }
}
