import CVirtioShim
import Glibc
import SystemPackage

/// A child process started with `posix_spawn`, with chosen fds placed at
/// chosen numbers (every other fd is close-on-exec in this project).
public struct ChildProcess: Sendable {
    public let pid: pid_t

    /// Start `path` with `arguments`; `fds` maps child fd number → our fd.
    /// The child gets 0, 1, 2 and exactly these fds: every other fd is closed
    /// in the child, whether or not it was close-on-exec here.
    ///
    /// Each fd is first duplicated (close-on-exec) to a number above every
    /// target, then dup2'ed onto its target in the child. Going through the
    /// copy means a source whose number equals its own target still loses
    /// FD_CLOEXEC, and a source whose number is another mapping's target is
    /// not overwritten before it is used.
    public static func spawn(_ path: String, arguments: [String], fds: [CInt: FileDescriptor] = [:],
                             stdout: FileDescriptor? = nil) throws -> ChildProcess {
        var mappings = fds
        if let stdout { mappings[1] = stdout }
        // Targets may include 0–2 (a plugin's socket is its stdin); 0–2 stay open either way.
        let floor = max(3, (mappings.keys.max() ?? 2) + 1)
        var copies: [(target: CInt, copy: CInt)] = []
        defer { for c in copies { close(c.copy) } }
        for (target, fd) in mappings.sorted(by: { $0.key < $1.key }) {
            let copy = fcntl(fd.rawValue, F_DUPFD_CLOEXEC, floor)
            guard copy >= 0 else { throw SystemCallError("fcntl F_DUPFD_CLOEXEC") }
            copies.append((target, copy))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for c in copies { posix_spawn_file_actions_adddup2(&actions, c.copy, c.target) }
        // Gaps below the highest target (closing an fd that is not open is ignored).
        for n in CInt(3)..<floor where mappings[n] == nil { posix_spawn_file_actions_addclose(&actions, n) }
        guard cvirtio_spawn_addclosefrom(&actions, floor) == 0 else { throw SystemCallError("posix_spawn_file_actions_addclosefrom_np") }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        // The supervisor blocks signals for its signalfd; children start with
        // the default mask and dispositions.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        guard cvirtio_spawnattr_default_signals(&attr) == 0 else { throw SystemCallError("posix_spawnattr") }
        var pid = pid_t()
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, Glibc.environ)
        guard rc == 0 else { throw SystemCallError("posix_spawn \(path)", Errno(rawValue: rc)) }
        return ChildProcess(pid: pid)
    }

    /// Reap the child if it has exited: its status as `wait()` reports it, nil if still running.
    public func poll() throws -> Int32? {
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == 0 { return nil }
        guard rc == pid else { throw SystemCallError("waitpid") }
        return Self.exitStatus(status)
    }

    /// Wait for the child; returns its exit status, or 128+signal if killed.
    public func wait() throws -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SystemCallError("waitpid") }
        }
        return Self.exitStatus(status)
    }

    /// A wait status as a shell reports it: the exit code, or 128 + signal.
    static func exitStatus(_ status: Int32) -> Int32 {
        status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}

/// A pipe whose read end this process keeps (CLOEXEC on both ends).
public struct UnixPipe: Sendable {
    public let read: FileDescriptor
    public let write: FileDescriptor

    public init() throws {
        var fds: [CInt] = [0, 0]
        guard cvirtio_pipe2(&fds, O_CLOEXEC) == 0 else { throw SystemCallError("pipe2") }
        read = FileDescriptor(rawValue: fds[0])
        write = FileDescriptor(rawValue: fds[1])
    }

    /// Read everything until end of file.
    public func readAll() throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try buf.withUnsafeMutableBytes { try read.read(into: $0) }
            if n == 0 { return out }
            out += buf[0..<n]
        }
    }
}

/// A process followed through a pidfd (pidfd_open(2)): its fd turns
/// readable when the process exits, whether or not it is our child, and a
/// signal sent through it cannot reach a process that reused the pid.
public struct ProcessHandle: Sendable {
    public let pid: pid_t
    public let fd: FileDescriptor

    public init(pid: pid_t) throws {
        let fd = cvirtio_pidfd_open(pid)
        guard fd >= 0 else { throw SystemCallError("pidfd_open \(pid)") }
        self.pid = pid
        self.fd = FileDescriptor(rawValue: fd)
    }

    /// Whether the process has exited (its pidfd is readable).
    public var hasExited: Bool { (try? Poll.readable([fd], timeoutMS: 0).isEmpty == false) ?? true }

    public func signal(_ sig: CInt) { _ = cvirtio_pidfd_send_signal(fd.rawValue, sig) }

    /// Wait up to `timeoutMS` for the process to exit; whether it did.
    public func waitForExit(timeoutMS: Int32) -> Bool {
        (try? Poll.readable([fd], timeoutMS: timeoutMS).isEmpty == false) ?? true
    }

    public func close() { try? fd.close() }
}
