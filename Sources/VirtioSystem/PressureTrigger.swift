import CVirtioShim
import Glibc
import SystemPackage

/// A PSI trigger (Documentation/accounting/psi.rst): an fd on
/// /proc/pressure/memory that polls POLLPRI when tasks stalled on memory for
/// more than `stall` within a `window`. Making one takes CAP_SYS_RESOURCE on
/// kernels before 6.5; polling it does not, so the fd can be handed on.
public enum PressureTrigger {
    public static let path = "/proc/pressure/memory"

    /// `some` stall of `stallMS` within `windowMS` (the kernel wants 500…10000 ms windows).
    public static func memory(stallMS: Int, windowMS: Int) throws -> FileDescriptor {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .readWrite, options: [.closeOnExec, .nonBlocking]) } catch let e as Errno {
            throw SystemCallError("open \(path)", e)
        }
        // The trigger is the written text with its terminating NUL.
        let text = Array("some \(stallMS * 1000) \(windowMS * 1000)".utf8) + [0]
        do {
            let n = try text.withUnsafeBytes { try fd.write($0) }
            guard n == text.count else { throw SystemCallError("write \(path): short", .ioError) }
        } catch {
            try? fd.close()
            if let e = error as? Errno { throw SystemCallError("write \(path)", e) }
            throw error
        }
        return fd
    }
}

/// A PSI trigger as an event loop wants it: poll(2) on a trigger reports
/// POLLIN always and POLLPRI on an event, so it is watched through an
/// epoll fd that waits for EPOLLPRI alone and is readable when one came.
public struct PressureWatch: Sendable {
    /// Poll this for readability.
    public let fd: FileDescriptor

    /// Watch `trigger` (which the caller keeps open).
    public init(trigger: FileDescriptor) throws {
        let raw = cvirtio_epoll_priority(trigger.rawValue)
        guard raw >= 0 else { throw SystemCallError("epoll (PSI trigger)") }
        fd = FileDescriptor(rawValue: raw)
    }

    /// Whether an event came since the last call (consumes it; never blocks).
    public func take() -> Bool { cvirtio_epoll_take(fd.rawValue) > 0 }

    public func close() { try? fd.close() }
}
