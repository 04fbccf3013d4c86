#if FUZZING
import CVirtioShim

/// SwiftPM links an executable's entry point as `<Module>_main`; in the
/// libFuzzer build that entry point hands control to libFuzzer.
@_cdecl("VirtioRingFuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    var argc = argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        fuzzRing(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}
#else
import Foundation

/// Without libFuzzer: replay every file given (or every file in given folders).
@main
struct Replay {
    static func main() throws {
        let args = CommandLine.arguments.dropFirst()
        guard !args.isEmpty else {
            print("usage: virtio-ring-fuzz FILE|DIR…   (replays inputs; build with `make fuzz` to fuzz)")
            exit(2)
        }
        var files: [URL] = []
        for a in args {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: a, isDirectory: &isDirectory) else {
                print("virtio-ring-fuzz: no such file or folder: \(a)")
                exit(1)
            }
            let url = URL(fileURLWithPath: a)
            files += isDirectory.boolValue
                ? try FileManager.default.contentsOfDirectory(at: url, includingPropertiesForKeys: nil) : [url]
        }
        guard !files.isEmpty else {
            print("virtio-ring-fuzz: nothing to replay in \(args.joined(separator: " "))")
            exit(1)
        }
        for f in files {
            let data = try Data(contentsOf: f)
            data.withUnsafeBytes { fuzzRing($0) }
        }
        print("replayed \(files.count) inputs")
    }
}
#endif
