import FoundationEssentials
import Glibc
import SystemPackage
import VirtioSystem
import VirtiodProtocol

/// What a plugin executable says of itself when run with `--describe`
/// (one JSON object on stdout): for `virtioctl plugins` when no process of
/// it runs. Cached per executable file (inode, size, mtime); an executable
/// that does not answer within 2 s is described as unknown.
extension Supervisor {
    func describe(_ m: PluginManifest) -> PluginSelfDescription? {
        var st = stat()
        guard stat(m.exec, &st) == 0 else { return nil }
        let stamp = "\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        if let cached = descriptions[m.exec], cached.stamp == stamp { return cached.value }
        let value = Self.runDescribe(m.exec)
        descriptions[m.exec] = (stamp, value)
        return value
    }

    static func runDescribe(_ exec: String) -> PluginSelfDescription? {
        guard let pipe = try? UnixPipe() else { return nil }
        defer { try? pipe.read.close() }
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(exec, arguments: ["--describe"], stdout: pipe.write)
            try? pipe.write.close()
        } catch {
            try? pipe.write.close()
            return nil
        }
        var out: [UInt8] = []
        let deadline = monotonic() + 2
        var buf = [UInt8](repeating: 0, count: 4096)
        while monotonic() < deadline, out.count < 65536 {
            guard let ready = try? Poll.readable([pipe.read], timeoutMS: 100), !ready.isEmpty else { continue }
            let n = (try? buf.withUnsafeMutableBytes { try pipe.read.read(into: $0) }) ?? 0
            if n <= 0 { break }
            out += buf[0..<n]
        }
        if (try? child.poll()) == nil { kill(child.pid, SIGKILL) }
        _ = try? child.wait()
        return try? JSONDecoder().decode(PluginSelfDescription.self, from: Data(out))
    }
}
