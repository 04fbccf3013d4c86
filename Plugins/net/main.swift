// virtiod-net: the network device (virtio 1.2 §5.1) on a TAP interface the
// supervisor made. This version moves frames on the first queue pair with
// no offloads; link status becomes the TAP carrier.
import VirtioCore
import VirtiodPluginRuntime

let wanted: NetFeatures = [.mac, .status, .mtu, .speedDuplex]
PluginMain.run(PluginProfile(
    name: "net", deviceType: .network, stub: false,
    features: FeatureRequest(required: 0, wanted: wanted.rawValue),
    queues: ["receiveq0", "transmitq0"],
    dataPath: { try NetDataPath(device: $0) }))
