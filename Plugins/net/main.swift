// virtiod-net: the network device (virtio 1.2 §5.1) on a TAP interface the
// supervisor made. Frames move on every queue pair (one TAP queue each) with
// checksum and TSO offloads passed through the vnet header; link status
// becomes the TAP carrier; the control queue mirrors the interface's
// promiscuous mode and MAC and answers announce requests.
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

let wanted: NetFeatures = [.mac, .status, .mtu, .speedDuplex, .mergeableRxBuffers, .controlVirtqueue, .multiqueue,
                           .controlRx, .controlMACAddress, .guestAnnounce,
                           .csum, .hostTSO4, .hostTSO6, .hostECN,
                           .guestCsum, .guestTSO4, .guestTSO6, .guestECN]
var profile = PluginProfile(
    name: "net", deviceType: .network, stub: false,
    // Large received packets (guest TSO) need mergeable buffers here: the
    // receive buffers are a page each.
    features: FeatureRequest(required: 0, wanted: wanted.rawValue, dependencies: NetFeatures.dependencies + [
        (NetFeatures.guestTSO4.rawValue, NetFeatures.mergeableRxBuffers.rawValue),
        (NetFeatures.guestTSO6.rawValue, NetFeatures.mergeableRxBuffers.rawValue),
    ]),
    queues: ["receiveq0", "transmitq0"], // the plan below decides
    dataPath: { try NetDataPath(device: $0) })
profile.queuePlan = { try NetDataPath.plan(negotiated: $0, device: $1) }
profile.readConfig = NetConfig.read
#if FUZZING
FuzzDriver.run(fuzzNetHeader)
#endif
// A receive buffer the device says it overfilled is one dropped packet.
profile.droppableQueues = Set((0..<64).map { "receiveq\($0)" })
PluginMain.run(profile)
