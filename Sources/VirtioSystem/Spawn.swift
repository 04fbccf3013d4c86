import CVirtioShim
import Glibc
import SystemPackage

/// A child process started with `posix_spawn`, with chosen fds placed at
/// chosen numbers (every other fd is close-on-exec in this project).
public struct ChildProcess: Sendable {
    public let pid: pid_t

    /// Start `path` with `arguments`; `fds` maps child fd number → our fd.
    public static func spawn(_ path: String, arguments: [String], fds: [CInt: FileDescriptor] = [:],
                             stdout: FileDescriptor? = nil) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, fd) in fds.sorted(by: { $0.key < $1.key }) {
            // dup2 onto the same number would keep CLOEXEC; go through a fresh number then.
            posix_spawn_file_actions_adddup2(&actions, fd.rawValue, target)
        }
        if let stdout { posix_spawn_file_actions_adddup2(&actions, stdout.rawValue, 1) }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, path, &actions, nil, argv, Glibc.environ)
        guard rc == 0 else { throw SystemCallError("posix_spawn \(path)", Errno(rawValue: rc)) }
        return ChildProcess(pid: pid)
    }

    /// Wait for the child; returns its exit status, or 128+signal if killed.
    public func wait() throws -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SystemCallError("waitpid") }
        }
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
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
