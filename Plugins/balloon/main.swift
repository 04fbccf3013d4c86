// virtiod-balloon: the memory balloon (virtio 1.2 §5.5). Stub: negotiates,
// sets up inflate/deflate/stats queues, reports num_pages and actual, and
// follows config changes (new targets). Inflating comes later.
import VirtioCore
import VirtiodPluginRuntime

var profile = PluginProfile(
    name: "balloon", deviceType: .balloon, stub: true,
    features: FeatureRequest(required: 0, wanted: (BalloonFeatures.statsVirtqueue.union(.deflateOnOOM)).rawValue),
    queues: ["inflateq", "deflateq", "statsq"])
profile.readConfig = BalloonConfig.read
PluginMain.run(profile)
