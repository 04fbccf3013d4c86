#if FUZZING
import CVirtioShim
import Glibc

/// A plugin's fuzz entry (docs/plugin-guide.md "Testing"): built with
/// -DFUZZING and -sanitize=fuzzer (`make fuzz`), a plugin's main calls this
/// instead of `PluginMain.run`, and libFuzzer drives `body` with its inputs.
public enum PluginFuzz {
    nonisolated(unsafe) static var body: ((UnsafeRawBufferPointer) -> Void)?

    public static func run(_ body: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
        Self.body = body
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            PluginFuzz.body?(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        })
    }
}
#endif
