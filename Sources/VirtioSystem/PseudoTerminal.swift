import CVirtioShim
import Glibc
import SystemPackage

/// A pseudo-terminal (pty(7)) by its master fd: what a console port is on
/// this side. The master is kept open by whoever must keep the terminal
/// (once closed, /dev/pts/N is gone); processes open the slave, /dev/pts/N.
public struct PseudoTerminal: Sendable {
    public let master: FileDescriptor
    /// N of /dev/pts/N.
    public let number: Int

    public init(master: FileDescriptor, number: Int) {
        self.master = master
        self.number = number
    }

    /// A new terminal: master close-on-exec and non-blocking, slave unlocked.
    /// `raw`: binary-clean (no echo, no line editing, no CR/LF mapping);
    /// otherwise a fresh terminal's cooked settings (for a login console).
    /// The slave is opened and closed once, so the master reports POLLHUP
    /// until somebody opens it (`hasReader`).
    public static func open(raw: Bool) throws -> PseudoTerminal {
        var n: Int32 = 0
        let fd = cvirtio_pty_open(&n)
        guard fd >= 0 else { throw SystemCallError("posix_openpt") }
        let t = PseudoTerminal(master: FileDescriptor(rawValue: fd), number: Int(n))
        do {
            let peer = cvirtio_pty_open_peer(fd)
            guard peer >= 0 else { throw SystemCallError("TIOCGPTPEER") }
            defer { Glibc.close(peer) }
            guard cvirtio_pty_set_raw(peer, raw ? 1 : 0) == 0 else { throw SystemCallError("tcsetattr") }
        } catch {
            try? t.master.close()
            throw error
        }
        return t
    }

    /// The terminal of a master fd taken back (e.g. from systemd's fd store).
    public init(adopting master: FileDescriptor) throws {
        var n: Int32 = 0
        guard cvirtio_pty_number(master.rawValue, &n) == 0 else { throw SystemCallError("TIOCGPTN") }
        self.master = master
        number = Int(n)
    }

    public var path: String { "/dev/pts/\(number)" }

    /// Make the terminal raw (binary-clean) or cooked (a fresh terminal's
    /// settings, as for a login) through a short-lived slave fd.
    public static func setMode(_ master: FileDescriptor, raw: Bool) throws {
        let peer = cvirtio_pty_open_peer(master.rawValue)
        guard peer >= 0 else { throw SystemCallError("TIOCGPTPEER") }
        defer { Glibc.close(peer) }
        guard cvirtio_pty_set_raw(peer, raw ? 1 : 0) == 0 else { throw SystemCallError("tcsetattr") }
    }

    /// Whether a process has the slave open: a master whose slave was opened
    /// and closed again reports POLLHUP until the next open (drivers/tty/pty.c,
    /// TTY_OTHER_CLOSED), and reads there fail with EIO.
    public static func hasReader(_ master: FileDescriptor) -> Bool {
        guard let events = try? Poll.wait([(master, false, false)], timeoutMS: 0) else { return false }
        return !events.contains { $0.closed }
    }

    /// Set the window size the slave's processes see (TIOCSWINSZ; SIGWINCH to its foreground group).
    public static func setWindow(_ master: FileDescriptor, rows: UInt16, cols: UInt16) throws {
        guard cvirtio_pty_set_window(master.rawValue, rows, cols) == 0 else { throw SystemCallError("TIOCSWINSZ") }
    }

    public static func window(_ fd: FileDescriptor) throws -> (rows: UInt16, cols: UInt16) {
        var r: UInt16 = 0, c: UInt16 = 0
        guard cvirtio_pty_get_window(fd.rawValue, &r, &c) == 0 else { throw SystemCallError("TIOCGWINSZ") }
        return (r, c)
    }
}
