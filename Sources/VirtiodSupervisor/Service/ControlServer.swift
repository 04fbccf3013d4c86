import FoundationEssentials
import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

/// The control socket's clients, served from the supervisor's loop without
/// ever blocking it (docs/control-protocol.md "Limits"): sockets are
/// non-blocking; a client has `requestDeadline` for its whole request line
/// and `responseDeadline` to take the answer; a request longer than
/// `maxRequest` is refused; at most `maxClientsPerUser` connections of one
/// user are served at once, `maxClients` in all (more are told so and
/// closed) — root gets its own share, so others cannot lock it out. A request whose answer takes time (status,
/// reload, release…) becomes a `PendingOperation` the loop steps until it is
/// done; the client waits, nothing else does.
final class ControlServer {
    static let maxClients = 128
    static let maxClientsPerUser = 16
    static let maxRequest = 64 * 1024
    static let requestDeadline = 2.0
    static let responseDeadline = 5.0

    final class Client {
        enum Phase { case reading, working(any PendingOperation), writing }
        let socket: UnixSocket
        let uid: UInt32
        var phase = Phase.reading
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        var deadline: Double

        init(socket: UnixSocket, uid: UInt32, deadline: Double) {
            self.socket = socket
            self.uid = uid
            self.deadline = deadline
        }
    }

    /// Members of this group may use the read verbs (docs/control-protocol.md "Access").
    static let group = "virtiod"

    /// The socket is root's. virtiod runs with group `virtiod` (the unit's
    /// Group=; sysusers.d makes the group), so the socket it makes has that
    /// group: then 0660, and members can read. Otherwise it stays 0600.
    /// (No chown: virtiod has neither CAP_CHOWN nor the system call.)
    static func grantGroup(_ path: String) {
        var st = stat()
        guard let entry = getgrnam(group), stat(path, &st) == 0, st.st_gid == entry.pointee.gr_gid else {
            Log.warning("\(path) is not in group '\(group)' (run virtiod through its unit, after systemd-sysusers): only root can use virtioctl")
            return
        }
        if chmod(path, 0o660) != 0 {
            Log.warning("cannot open \(path) to group \(group): \(String(cString: strerror(errno))); only root can use virtioctl")
        }
    }

    let listener: UnixSocket
    private(set) var clients: [Client] = []

    init(listener: UnixSocket) { self.listener = listener }

    /// What the loop polls: the listener, and each client for reading or writing.
    var pollSet: [(fd: FileDescriptor, write: Bool)] {
        var set: [(fd: FileDescriptor, write: Bool)] = [(listener.fd, false)]
        for c in clients {
            switch c.phase {
            case .reading: set.append((c.socket.fd, false))
            case .writing: set.append((c.socket.fd, true))
            case .working: break
            }
        }
        return set
    }

    /// The earliest time something here must happen (deadlines, operations).
    var nextDeadline: Double? {
        clients.map { c -> Double in
            if case .working(let op) = c.phase { return min(c.deadline, op.wakeAt) }
            return c.deadline
        }.min()
    }

    func owns(_ fd: FileDescriptor) -> Bool { fd == listener.fd || clients.contains { $0.socket.fd == fd } }

    /// A poll event on the listener or a client.
    func handle(_ event: Poll.Event, _ supervisor: Supervisor) {
        if event.fd == listener.fd {
            acceptAll(supervisor)
            return
        }
        guard let c = clients.first(where: { $0.socket.fd == event.fd }) else { return }
        switch c.phase {
        case .reading: read(c, supervisor)
        case .writing: write(c)
        case .working: break
        }
        if event.closed, case .reading = c.phase { drop(c) }
    }

    /// Step pending operations and enforce deadlines.
    func tick(_ supervisor: Supervisor, now: Double) {
        for c in clients {
            if case .working(let op) = c.phase, let response = op.step(supervisor, now: now) {
                respond(c, response)
                write(c)
            }
        }
        for c in clients where now >= c.deadline {
            switch c.phase {
            case .reading:
                // Slow or silent: it loses its turn, nothing else does.
                respond(c, .failure(ControlError(.badRequest, "request not complete within \(Int(Self.requestDeadline)) s")))
                write(c)
                drop(c)
            case .writing:
                drop(c)
            case .working:
                // Operations keep their own deadlines; the client waits.
                break
            }
        }
    }

    private func acceptAll(_ supervisor: Supervisor) {
        while let s = try? listener.accept(nonBlocking: true) {
            let uid = (try? s.peerCredentials().uid) ?? UInt32.max
            let mine = clients.filter { $0.uid == uid }.count
            guard clients.count < Self.maxClients, mine < Self.maxClientsPerUser else {
                var line = (try? ControlWire.encoder.encode(ControlResponse.failure(ControlError(.busy,
                    "virtiod serves \(Self.maxClientsPerUser) control connections per user at once; try again")))) ?? Data()
                line.append(UInt8(ascii: "\n"))
                _ = try? s.writeAvailable(ArraySlice(line))
                s.close()
                continue
            }
            clients.append(Client(socket: s, uid: uid, deadline: monotonic() + Self.requestDeadline))
        }
    }

    private func read(_ c: Client, _ supervisor: Supervisor) {
        while true {
            let read: [UInt8]?
            do { read = try c.socket.readAvailable(max: 8192) } catch {
                drop(c)
                return
            }
            guard let chunk = read else { return } // nothing more for now
            if chunk.isEmpty {
                // Closed before a whole line.
                drop(c)
                return
            }
            c.input += chunk
            if let nl = c.input.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(c.input[..<nl])
                c.input = []
                dispatch(c, line, supervisor)
                return
            }
            guard c.input.count <= Self.maxRequest else {
                c.input = []
                respond(c, .failure(ControlError(.badRequest, "request longer than \(Self.maxRequest) bytes")))
                // No more reading: the rest of what it sends is dropped unread.
                shutdown(c.socket.fd.rawValue, Int32(SHUT_RD))
                write(c)
                return
            }
        }
    }

    private func dispatch(_ c: Client, _ line: [UInt8], _ supervisor: Supervisor) {
        guard let request = try? ControlWire.decoder.decode(ControlRequest.self, from: Data(line)) else {
            respond(c, .failure(ControlError(.badRequest, "not a version \(ControlProtocol.version) request: "
                                             + Log.quoted(String(decoding: line.prefix(200), as: UTF8.self), limit: 120))))
            write(c)
            return
        }
        switch supervisor.begin(request, uid: c.uid) {
        case .done(let response):
            respond(c, response)
            write(c)
        case .pending(let op):
            c.phase = .working(op)
            c.deadline = .infinity
        }
    }

    private func respond(_ c: Client, _ response: ControlResponse) {
        var out = (try? ControlWire.encoder.encode(response)).map(Array.init) ?? Array(#"{"ok":false}"#.utf8)
        out.append(UInt8(ascii: "\n"))
        c.output = out
        c.written = 0
        c.phase = .writing
        c.deadline = monotonic() + Self.responseDeadline
    }

    private func write(_ c: Client) {
        guard case .writing = c.phase else { return }
        while c.written < c.output.count {
            guard let n = try? c.socket.writeAvailable(c.output[c.written...]) else {
                drop(c)
                return
            }
            if n == 0 { return }
            c.written += n
        }
        drop(c)
    }

    private func drop(_ c: Client) {
        guard clients.contains(where: { $0 === c }) else { return }
        c.socket.close()
        clients.removeAll { $0 === c }
    }

    func closeAll() {
        for c in clients { c.socket.close() }
        clients = []
    }
}

/// A control request whose answer takes more than one turn of the loop.
protocol PendingOperation: AnyObject {
    /// When it wants to be stepped next (its own deadline), at the latest.
    var wakeAt: Double { get }
    /// Make progress; the response once it is done.
    func step(_ supervisor: Supervisor, now: Double) -> ControlResponse?
}

/// What `Supervisor.begin` makes of a request.
enum ControlReply {
    case done(ControlResponse)
    case pending(any PendingOperation)
}
