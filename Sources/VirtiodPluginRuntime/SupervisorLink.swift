import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

/// The plugin's end of its socket to the supervisor: its standard input
/// (docs/plugin-protocol.md). Every message it sends carries its pid.
public struct SupervisorLink: Sendable {
    let socket: UnixSocket
    public var fd: FileDescriptor { socket.fd }

    init(socket: UnixSocket) { self.socket = socket }

    func send(_ message: PluginMessage) throws {
        var m = message
        m.pid = getpid()
        try socket.send(m.encoded())
    }

    /// One message (fds attached to it are closed: only `attach` and `fds` carry any).
    func receive() throws -> [UInt8] {
        let (bytes, fds) = try socket.receive(maxFDs: PluginProtocol.fdsPerMessage)
        for f in fds { try? f.close() }
        return bytes
    }

    /// One message and at most one fd attached to it (an `endpoint` answer's); more are closed.
    func receiveWithFD() throws -> (bytes: [UInt8], fd: FileDescriptor?) {
        let (bytes, fds) = try socket.receive(maxFDs: PluginProtocol.fdsPerMessage)
        for f in fds.dropFirst() { try? f.close() }
        return (bytes, fds.first)
    }

    /// `attach` and every fd it names (the first batch with it, the rest on
    /// `fds` messages), by name. Throws on anything else.
    func receiveAttach() throws -> (AttachInfo, [String: FileDescriptor]) {
        var received: [FileDescriptor] = []
        func closeAll() { for f in received { try? f.close() } }
        let (bytes, first) = try socket.receive(maxFDs: PluginProtocol.fdsPerMessage)
        received = first
        guard !bytes.isEmpty else { closeAll(); throw PluginError("supervisor closed the socket before attach") }
        let message: PluginMessage
        do { message = try PluginMessage.decode(bytes) } catch { closeAll(); throw PluginError("unreadable attach message: \(error)") }
        guard message.version == PluginProtocol.version, message.kind == .attach, let info = message.attach else {
            closeAll()
            throw PluginError("expected attach (protocol \(PluginProtocol.version)), got \(message.kind) v\(message.version)")
        }
        while received.count < info.fds.count {
            let (more, fds) = try socket.receive(maxFDs: PluginProtocol.fdsPerMessage)
            received += fds
            guard !more.isEmpty, let m = try? PluginMessage.decode(more), m.kind == .fds, !fds.isEmpty else {
                closeAll()
                throw PluginError("expected the rest of attach's fds (\(received.count) of \(info.fds.count) so far)")
            }
        }
        guard received.count == info.fds.count, Set(info.fds).count == info.fds.count else {
            closeAll()
            throw PluginError("attach named \(info.fds.count) fds (unique: \(Set(info.fds).count)) and carried \(received.count)")
        }
        return (info, Dictionary(uniqueKeysWithValues: zip(info.fds, received)))
    }
}
