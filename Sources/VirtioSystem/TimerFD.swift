import CVirtioShim
import Glibc
import SystemPackage

/// A monotonic timer as a pollable fd (timerfd_create(2)): for plugins that
/// do something at an interval (pace a device, poll statistics) from the
/// same event loop as their interrupts.
public struct TimerFD: Sendable, Hashable {
    public let fd: FileDescriptor

    public init() throws {
        let raw = cvirtio_timerfd_create()
        guard raw >= 0 else { throw SystemCallError("timerfd_create") }
        fd = FileDescriptor(rawValue: raw)
    }

    /// Fire after `after` seconds, then every `every` seconds (nil: once).
    public func arm(after: Double, every: Double? = nil) throws {
        let first = max(1, Int64(after * 1e9)), interval = every.map { max(1, Int64($0 * 1e9)) } ?? 0
        guard cvirtio_timerfd_arm(fd.rawValue, first, interval) == 0 else { throw SystemCallError("timerfd_settime") }
    }

    public func disarm() throws {
        guard cvirtio_timerfd_arm(fd.rawValue, 0, 0) == 0 else { throw SystemCallError("timerfd_settime") }
    }

    /// How many times it fired since the last call (0 if none: non-blocking).
    public func consume() -> UInt64 {
        var v: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &v) { Glibc.read(fd.rawValue, $0.baseAddress, 8) }
        return n == 8 ? v : 0
    }

    public func close() { try? fd.close() }
}
