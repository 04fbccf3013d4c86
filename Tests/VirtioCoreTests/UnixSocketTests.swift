import Glibc
import SystemPackage
import Testing
import VirtioSystem

/// The supervisor → plugin channel: messages with fds attached (SCM_RIGHTS).
@Suite struct UnixSocketTests {
    @Test func fdsTravelWithTheMessage() throws {
        let (a, b) = try UnixSocket.seqpacketPair()
        defer { b.close() }
        let memory = try SharedMemory(name: "socket-test", size: 4096)
        memory.base.storeBytes(of: 0x5eed_f00d, as: UInt32.self)
        let event = try EventFD()
        defer { event.close() }
        try a.send(Array("attach".utf8), fds: [memory.fd, event.fd])
        let (bytes, fds) = try b.receive()
        #expect(String(decoding: bytes, as: UTF8.self) == "attach")
        try #require(fds.count == 2)
        // The received fds are new numbers for the same objects.
        #expect(fds[0] != memory.fd && fds[1] != event.fd)
        let view = try SharedMemory(mapping: fds[0], size: 4096, ownsFD: true)
        #expect(view.base.load(as: UInt32.self) == 0x5eed_f00d)
        try EventFD(fd: fds[1]).signal(3)
        #expect(try event.consume() == 3)
        #expect(fcntl(fds[1].rawValue, F_GETFD) & FD_CLOEXEC != 0, "received fds must be close-on-exec")
        try? fds[1].close()
        // A closed peer reads as an empty message.
        a.close()
        let (end, none) = try b.receive()
        #expect(end.isEmpty && none.isEmpty)
    }
}

/// The memfds virtiod shares with plugins have sealed sizes: a plugin (any
/// holder of the fd) cannot truncate them under the supervisor's mapping.
@Suite struct SealedMemoryTests {
    @Test func sharedMemoryCannotShrinkOrGrow() throws {
        let m = try SharedMemory(name: "seal-test", size: 8192)
        #expect(m.isSizeSealed)
        #expect(ftruncate(m.fd.rawValue, 0) == -1 && errno == EPERM)
        #expect(ftruncate(m.fd.rawValue, 1 << 20) == -1 && errno == EPERM)
        // A second process's view of the same fd is just as bound.
        let view = try SharedMemory(mapping: m.fd, size: 8192, ownsFD: false)
        #expect(view.size == 8192)
        #expect(throws: SystemCallError.self) { _ = try SharedMemory(mapping: m.fd, size: 16384, ownsFD: false) }
    }
}
