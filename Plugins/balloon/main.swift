// virtiod-balloon: the memory balloon (virtio 1.2 §5.5). Follows the host's
// target with pages the supervisor holds and pins for it (endpoint
// `balloon`), deflates under memory pressure when DEFLATE_ON_OOM is
// negotiated, and serves the stats queue with the guest's real figures.
import VirtioCore
import VirtiodPluginRuntime

var profile = PluginProfile(
    name: "balloon", deviceType: .balloon, stub: false,
    features: FeatureRequest(required: 0, wanted: (BalloonFeatures.statsVirtqueue.union(.deflateOnOOM)).rawValue),
    queues: ["inflateq", "deflateq", "statsq"],
    dataPath: { try BalloonDataPath(device: $0) })
profile.readConfig = BalloonConfig.read
PluginMain.run(profile)
