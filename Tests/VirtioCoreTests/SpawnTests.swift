import Glibc
import SystemPackage
import Testing
import VirtioSystem

/// fds reach the child at the numbers asked for, even when a source number
/// equals its own target or another mapping's target.
@Suite struct SpawnTests {
    @Test func fdsArriveAtTheirTargetsWhateverTheirNumbers() throws {
        let a = try UnixPipe(), b = try UnixPipe(), out = try UnixPipe()
        // Child fd 3 ← b's write end, child fd (a's write end number) ← a's write end:
        // a source sitting on its own target, and a target that is another source's number.
        let aw = a.write.rawValue, bw = b.write.rawValue
        let script = "echo A >&\(aw); echo B >&3; ls /proc/self/fd | sort -n | tr '\\n' ' '"
        let child = try ChildProcess.spawn("/bin/bash", arguments: ["-c", script],
                                           fds: [3: b.write, aw: a.write], stdout: out.write)
        for p in [a, b, out] { try p.write.close() }
        let gotA = String(decoding: try a.readAll(), as: UTF8.self)
        let gotB = String(decoding: try b.readAll(), as: UTF8.self)
        let fds = String(decoding: try out.readAll(), as: UTF8.self)
        #expect(try child.wait() == 0)
        #expect(gotA == "A\n")
        #expect(gotB == "B\n")
        // Nothing else leaked into the child: 0, 1, 2, the two targets, and ls's own directory fd.
        let open = Set(fds.split(separator: " ").compactMap { Int32($0) })
        #expect(open.isSuperset(of: [0, 1, 2, 3, aw]), "child fds: \(fds)")
        #expect(open.subtracting([0, 1, 2, 3, aw]).count <= 1, "child fds: \(fds) (b's write end was \(bw))")
    }
}
