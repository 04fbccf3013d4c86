import CUring
import Glibc
import SystemPackage

/// An io_uring (through liburing) with 128-byte submission entries, for the
/// one kind of request virtiod sends through it: IORING_OP_URING_CMD, a
/// driver command with up to 80 bytes of payload (ublk's control and queue
/// commands, Documentation/block/ublk.rst). Completions are reaped without
/// waiting, or waited for with a time limit; an eventfd can be registered
/// so a poll loop sees when completions arrive.
///
/// Not Sendable: a ring belongs to the thread that submits on it (ublk
/// also insists that one thread issues all of a queue's commands).
public final class IOURing {
    // SAFETY: an opaque handle made in init and freed in deinit only.
    private let ring: OpaquePointer

    public struct Completion: Equatable, Sendable {
        public var userData: UInt64
        /// The command's result: >= 0, or a negative errno.
        public var result: Int32
    }

    /// A ring with room for `entries` submissions (a power of two).
    public init(entries: UInt32) throws {
        var error: Int32 = 0
        guard let r = cvirtio_ring_new(entries, &error) else { throw SystemCallError("io_uring_setup", Errno(rawValue: -error)) }
        ring = r
    }

    deinit {
        cvirtio_ring_free(ring)
    }

    /// Queue a URING_CMD for `fd` (not submitted until `submit`). False if
    /// the submission queue is full.
    public func queueCommand(fd: FileDescriptor, op: UInt32, payload: UnsafeRawBufferPointer, userData: UInt64) throws -> Bool {
        let r = cvirtio_ring_command(ring, fd.rawValue, op, payload.baseAddress, payload.count, userData)
        if r == -EBUSY { return false }
        guard r == 0 else { throw SystemCallError("io_uring command", Errno(rawValue: -r)) }
        return true
    }

    /// Hand what was queued to the kernel; how many entries it took.
    @discardableResult
    public func submit() throws -> Int {
        while true {
            let r = cvirtio_ring_submit(ring)
            if r == -EINTR { continue }
            guard r >= 0 else { throw SystemCallError("io_uring_enter", Errno(rawValue: -r)) }
            return Int(r)
        }
    }

    /// The next completion, without waiting.
    public func reap() -> Completion? {
        var data: UInt64 = 0, res: Int32 = 0
        guard cvirtio_ring_reap(ring, &data, &res) == 1 else { return nil }
        return Completion(userData: data, result: res)
    }

    /// The next completion, waiting up to `timeoutMS`; nil on timeout.
    public func wait(timeoutMS: UInt32) throws -> Completion? {
        var data: UInt64 = 0, res: Int32 = 0
        while true {
            let r = cvirtio_ring_wait(ring, timeoutMS, &data, &res)
            if r == -EINTR { continue }
            if r < 0 { throw SystemCallError("io_uring wait", Errno(rawValue: -r)) }
            return r == 1 ? Completion(userData: data, result: res) : nil
        }
    }

    /// Signal `eventFD` whenever a completion is posted.
    public func register(_ eventFD: EventFD) throws {
        let r = cvirtio_ring_register_eventfd(ring, eventFD.fd.rawValue)
        guard r == 0 else { throw SystemCallError("io_uring_register(eventfd)", Errno(rawValue: -r)) }
    }
}
