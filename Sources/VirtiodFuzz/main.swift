// virtiod-fuzz: the supervisor's parsers (Targets.swift). Fuzzing: the
// target is VIRTIOD_FUZZ_TARGET. Replay: each folder is named after its
// target (Tests/FuzzCorpus/ini/, …).
import Glibc
import VirtioSystem

let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: " ")
#if FUZZING
guard let name = getenv("VIRTIOD_FUZZ_TARGET").map({ String(cString: $0) }), let target = FuzzTarget(rawValue: name) else {
    print("set VIRTIOD_FUZZ_TARGET to one of: \(names)")
    exit(2)
}
FuzzDriver.run { target.run($0) }
#else
let folders = Array(CommandLine.arguments.dropFirst())
guard !folders.isEmpty else {
    print("usage: virtiod-fuzz DIR…   (DIR named after a target: \(names))")
    exit(2)
}
for folder in folders {
    let name = folder.split(separator: "/").last.map(String.init) ?? folder
    guard let target = FuzzTarget(rawValue: name) else {
        print("virtiod-fuzz: \(folder): no fuzz target '\(name)' (one of: \(names))")
        exit(1)
    }
    do {
        print("\(name): replayed \(try FuzzDriver.replay([folder]) { target.run($0) }) inputs")
    } catch {
        print("virtiod-fuzz: \(error)")
        exit(1)
    }
}
#endif
