import Glibc
import VirtioSystem

#if FUZZING
FuzzDriver.run(fuzzRing)
#else
let args = Array(CommandLine.arguments.dropFirst())
guard !args.isEmpty else {
    print("usage: virtio-ring-fuzz FILE|DIR…   (replays inputs; build with `make fuzz` to fuzz)")
    exit(2)
}
do {
    print("replayed \(try FuzzDriver.replay(args, fuzzRing)) inputs")
} catch {
    print("virtio-ring-fuzz: \(error)")
    exit(1)
}
#endif
