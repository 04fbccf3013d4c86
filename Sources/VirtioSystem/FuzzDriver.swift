import CVirtioShim
import FoundationEssentials
import Glibc

/// The one driver of every fuzz target (`make fuzz`, `make test`): built
/// with -DFUZZING and -sanitize=fuzzer, `run` hands the process to libFuzzer
/// and feeds `body` its inputs; built normally, `replay` feeds `body` the
/// files given (or every file in the folders given), so a corpus stays a test.
public enum FuzzDriver {
    #if FUZZING
    nonisolated(unsafe) static var body: ((UnsafeRawBufferPointer) -> Void)?

    public static func run(_ body: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
        Self.body = body
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            FuzzDriver.body?(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        })
    }
    #endif

    /// The files at `paths` (folders: the files in them), or why not.
    public static func inputs(_ paths: [String]) throws -> [String] {
        var files: [String] = []
        for p in paths {
            var st = stat()
            guard stat(p, &st) == 0 else { throw SystemCallError("no such file or folder: \(p)", .noSuchFileOrDirectory) }
            if st.st_mode & S_IFMT == S_IFDIR {
                let names = try FileManager.default.contentsOfDirectory(atPath: p).sorted()
                files += names.map { "\(p)/\($0)" }
            } else {
                files.append(p)
            }
        }
        return files
    }

    /// Feed `body` each input file; returns how many.
    @discardableResult
    public static func replay(_ paths: [String], _ body: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        let files = try inputs(paths)
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else { throw SystemCallError("cannot read \(f)") }
            data.withUnsafeBytes { body($0) }
        }
        return files.count
    }
}
