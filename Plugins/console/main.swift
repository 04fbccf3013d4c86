// virtiod-console: the console device (virtio 1.2 §5.3). Stub: negotiates
// size and multiport, sets up port 0 and the control queues, reports
// cols/rows/max_nr_ports. The PTY comes later.
import VirtioCore
import VirtiodPluginRuntime

var profile = PluginProfile(
    name: "console", deviceType: .console, stub: true,
    features: FeatureRequest(required: 0, wanted: ConsoleFeatures.size.union(.multiport).rawValue),
    queues: ["receiveq0", "transmitq0", "control-receiveq", "control-transmitq"])
profile.readConfig = ConsoleConfig.read
PluginMain.run(profile)
