// virtiod-console: the console device (virtio 1.2 §5.3). Every port — the
// console port and, with multiport, each further port the device adds — is
// a terminal on this machine (/run/virtiod/ports/NAME → /dev/pts/N, made by
// the supervisor's `pty` endpoint); ConsoleDataPath moves the bytes and
// speaks the multiport control protocol.
import VirtioCore
import VirtiodPluginRuntime

var profile = PluginProfile(
    name: "console", deviceType: .console, stub: false,
    features: FeatureRequest(required: 0, wanted: ConsoleFeatures.size.union(.multiport).rawValue),
    queues: ["receiveq0", "transmitq0"], // the plan below decides
    maxQueueSize: 64,
    dataPath: { try ConsoleDataPath(device: $0) })
profile.queuePlan = { try ConsoleDataPath.plan(negotiated: $0, device: $1) }
profile.readConfig = ConsoleConfig.read
PluginMain.run(profile)
