#if FUZZING
import CVirtioShim
import Glibc

/// SwiftPM links an executable's entry point as `<Module>_main`; in the
/// libFuzzer build it hands control to libFuzzer, fuzzing the target named
/// by VIRTIOD_FUZZ_TARGET.
@_cdecl("VirtiodFuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    guard let name = getenv("VIRTIOD_FUZZ_TARGET").map({ String(cString: $0) }), let target = FuzzTarget(rawValue: name) else {
        print("set VIRTIOD_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: " "))")
        return 2
    }
    fuzzTarget = target
    var argc = argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        fuzzTarget?.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}

nonisolated(unsafe) var fuzzTarget: FuzzTarget?
#else
import Foundation

/// Without libFuzzer: replay corpus folders named after their target
/// (Tests/FuzzCorpus/ini/, …) or files given with the target as a
/// VIRTIOD_FUZZ_TARGET environment variable.
@main
struct Replay {
    static func main() throws {
        let args = CommandLine.arguments.dropFirst()
        guard !args.isEmpty else {
            print("usage: virtiod-fuzz DIR…   (DIR named after a target: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: " ")))")
            exit(2)
        }
        var count = 0
        for a in args {
            let url = URL(fileURLWithPath: a)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: a, isDirectory: &isDirectory) else {
                print("virtiod-fuzz: no such file or folder: \(a)")
                exit(1)
            }
            let targetName = isDirectory.boolValue ? url.lastPathComponent
                : ProcessInfo.processInfo.environment["VIRTIOD_FUZZ_TARGET"] ?? url.deletingLastPathComponent().lastPathComponent
            guard let target = FuzzTarget(rawValue: targetName) else {
                print("virtiod-fuzz: \(a): no fuzz target '\(targetName)'")
                exit(1)
            }
            let files = isDirectory.boolValue ? try FileManager.default.contentsOfDirectory(at: url, includingPropertiesForKeys: nil) : [url]
            for f in files {
                try Data(contentsOf: f).withUnsafeBytes { target.run($0) }
                count += 1
            }
            print("\(target.rawValue): replayed \(files.count) inputs")
        }
        guard count > 0 else { print("virtiod-fuzz: nothing replayed"); exit(1) }
    }
}
#endif
