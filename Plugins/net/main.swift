// virtiod-net: the network device (virtio 1.2 §5.1). Stub until the net
// plugin issue: negotiates MAC, status, MTU and mergeable buffers, sets up
// receiveq0/transmitq0, reports MAC, link and MTU. No TAP interface yet.
import VirtioCore
import VirtiodPluginRuntime

let wanted: NetFeatures = [.mac, .status, .mtu, .mergeableRxBuffers, .speedDuplex]
PluginMain.run(PluginProfile(
    name: "net", deviceType: .network, stub: true,
    features: FeatureRequest(required: 0, wanted: wanted.rawValue),
    queues: ["receiveq0", "transmitq0"]))
