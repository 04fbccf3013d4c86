import Foundation
import Glibc
import SystemPackage
import Testing
import VirtioSystem
import VirtiodProtocol
@testable import VirtiodSupervisor

/// The control socket never lets a client hold the supervisor: deadlines for
/// the whole request, a size cap, a per-user connection cap.
@Suite struct ControlServerTests {
    final class Rig {
        let path: String
        let server: ControlServer
        let supervisor: Supervisor
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("vctl-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
            var o = SupervisorOptions()
            o.manifestDirectories = []
            supervisor = Supervisor(options: o)
            server = ControlServer(listener: try UnixSocket.listen(path: path, mode: 0o600, backlog: 128))
        }
        deinit { server.closeAll(); server.listener.close(); unlink(path) }

        /// One turn of the supervisor's loop, as far as the control socket goes.
        func turn(at now: Double = monotonic()) throws {
            for e in try Poll.wait(server.pollSet, timeoutMS: 20) where server.owns(e.fd) { server.handle(e, supervisor) }
            server.tick(supervisor, now: now)
        }

        func client() throws -> UnixSocket { try UnixSocket.connect(path: path) }
    }

    func answer(_ s: UnixSocket) throws -> ControlResponse {
        try ControlWire.decoder.decode(ControlResponse.self, from: Data(try s.readLine()))
    }

    @Test func aWholeRequestIsAnswered() throws {
        let rig = try Rig()
        let c = try rig.client()
        defer { c.close() }
        try c.writeAll(Array(#"{"version":2,"verb":"list"}"#.utf8) + [10])
        for _ in 0..<5 { try rig.turn() }
        let r = try answer(c)
        #expect(r.ok && r.devices != nil)
    }

    @Test func aClientTooSlowForTheDeadlineIsDroppedAndOthersAreServed() throws {
        let rig = try Rig()
        let slow = try rig.client()
        defer { slow.close() }
        try slow.writeAll(Array(#"{"version":2,"#.utf8))
        try rig.turn()
        #expect(rig.server.clients.count == 1)
        // Another client is answered while the slow one is still there.
        let quick = try rig.client()
        defer { quick.close() }
        try quick.writeAll(Array(#"{"version":2,"verb":"plugins"}"#.utf8) + [10])
        for _ in 0..<5 { try rig.turn() }
        #expect(try answer(quick).ok)
        // Past the deadline for the whole request: answered with an error, gone.
        try rig.turn(at: monotonic() + ControlServer.requestDeadline + 0.1)
        #expect(rig.server.clients.isEmpty)
        let r = try answer(slow)
        #expect(!r.ok && r.error?.message.contains("not complete within") == true)
    }

    @Test func anOversizedRequestIsRefused() throws {
        let rig = try Rig()
        let c = try rig.client()
        defer { c.close() }
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 16384)
        var sent = 0
        while sent <= ControlServer.maxRequest {
            guard (try? c.writeAll(chunk)) != nil else { break }
            sent += chunk.count
            try rig.turn()
        }
        for _ in 0..<3 { try rig.turn() }
        let r = try answer(c)
        #expect(!r.ok && r.error?.message.contains("longer than") == true)
    }

    @Test func oneUserGetsOnlyItsShareOfConnections() throws {
        let rig = try Rig()
        var held: [UnixSocket] = []
        defer { held.forEach { $0.close() } }
        for _ in 0..<(ControlServer.maxClientsPerUser + 3) { held.append(try rig.client()) }
        try rig.turn()
        #expect(rig.server.clients.count == ControlServer.maxClientsPerUser)
        // The extra ones were told and closed.
        let r = try answer(held.last!)
        #expect(!r.ok && r.error?.code == .busy)
    }

    @Test func malformedJSONGetsAnErrorAnswer() throws {
        let rig = try Rig()
        let c = try rig.client()
        defer { c.close() }
        try c.writeAll(Array("{\"verb\": \u{1b}[31m\n".utf8))
        for _ in 0..<5 { try rig.turn() }
        let r = try answer(c)
        #expect(!r.ok && r.error?.code == .badRequest && r.error?.message.contains("\\u{1b}") == true)
    }
}
