import Glibc
import SystemPackage

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

extension Poll {
    public struct Event: Sendable, Hashable {
        public var fd: FileDescriptor
        public var readable: Bool
        public var writable: Bool
        /// Hung up or in error: nothing more will come.
        public var closed: Bool
    }

    /// poll(2) for readability and, where asked, writability.
    public static func wait(_ fds: [(fd: FileDescriptor, write: Bool)], timeoutMS: Int32) throws -> [Event] {
        try wait(fds.map { ($0.fd, true, $0.write) }, timeoutMS: timeoutMS)
    }

    /// poll(2) for what each entry asks; an entry asking for neither
    /// reports only a hang-up or an error (`closed`).
    public static func wait(_ fds: [(fd: FileDescriptor, read: Bool, write: Bool)], timeoutMS: Int32) throws -> [Event] {
        var entries = fds.map {
            pollfd(fd: $0.fd.rawValue, events: ($0.read ? Int16(POLLIN) : 0) | ($0.write ? Int16(POLLOUT) : 0), revents: 0)
        }
        let n = entries.withUnsafeMutableBufferPointer { Glibc.poll($0.baseAddress, nfds_t($0.count), timeoutMS) }
        if n < 0 {
            if errno == EINTR { return [] }
            throw SystemCallError("poll")
        }
        return entries.filter { $0.revents != 0 }.map {
            Event(fd: FileDescriptor(rawValue: $0.fd), readable: $0.revents & Int16(POLLIN) != 0,
                  writable: $0.revents & Int16(POLLOUT) != 0,
                  closed: $0.revents & (Int16(POLLHUP) | Int16(POLLERR) | Int16(POLLNVAL)) != 0)
        }
    }
}
