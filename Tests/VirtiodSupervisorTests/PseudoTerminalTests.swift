import Glibc
import SystemPackage
import Testing
import VirtioCore
import VirtioSystem
@testable import VirtiodSupervisor

/// Terminals as the pty endpoint makes them (real ptys of this machine).
@Suite struct PseudoTerminalTests {
    @Test func rawTerminalReportsReadersAndPassesBytes() throws {
        let t = try PseudoTerminal.open(raw: true)
        defer { try? t.master.close() }
        #expect(!PseudoTerminal.hasReader(t.master), "nobody has the slave open yet")
        let raw = Glibc.open(t.path, O_RDWR | O_NOCTTY | O_CLOEXEC)
        try #require(raw >= 0)
        let slave = FileDescriptor(rawValue: raw)
        #expect(PseudoTerminal.hasReader(t.master))
        // Binary-clean: CR, LF, ^C, ^D pass unchanged and are not echoed.
        let region = DMARegion(anonymousSize: 4096)
        let bytes: [UInt8] = [13, 10, 3, 4, 0, 255]
        region.copy(bytes, into: DMASlice(offset: 0, length: bytes.count))
        #expect(try DMAFileIO.write(t.master, from: region, DMASlice(offset: 0, length: bytes.count)) == .moved(bytes.count))
        var got = [UInt8](repeating: 0, count: 16)
        let n = try got.withUnsafeMutableBytes { try slave.read(into: $0) }
        #expect(Array(got.prefix(n)) == bytes)
        #expect(try DMAFileIO.read(t.master, into: region, DMASlice(offset: 0, length: 64)) == .wouldBlock, "no echo")
        try PseudoTerminal.setWindow(t.master, rows: 24, cols: 80)
        #expect(try PseudoTerminal.window(slave) == (24, 80))
        try slave.close()
        #expect(!PseudoTerminal.hasReader(t.master), "closed again")
        #expect(try DMAFileIO.read(t.master, into: region, DMASlice(offset: 0, length: 64)) == .closed)
        #expect(try PseudoTerminal(adopting: t.master).number == t.number)
    }

    @Test func linkNamesFromTheDeviceAreFileNames() {
        #expect(PTYEndpoint.linkName("org.qemu.guest_agent.0") == "org.qemu.guest_agent.0")
        #expect(PTYEndpoint.linkName("name\0junk") == "name")
        for bad in ["", ".", "..", "a/b", "with space", "tab\there", String(repeating: "x", count: 201), "ü"] {
            #expect(PTYEndpoint.linkName(bad) == nil, "\(bad)")
        }
    }
}
