// virtiod-balloon: the memory balloon (virtio 1.2 §5.5). Serves the stats
// queue with the guest's real figures (BalloonStatsPath); inflating and
// deflating are not done yet — the target (num_pages) is reported, no
// memory is held, `actual` stays 0 — so it still says "stub".
import VirtioCore
import VirtiodPluginRuntime

var profile = PluginProfile(
    name: "balloon", deviceType: .balloon, stub: true,
    features: FeatureRequest(required: 0, wanted: (BalloonFeatures.statsVirtqueue.union(.deflateOnOOM)).rawValue),
    queues: ["inflateq", "deflateq", "statsq"],
    dataPath: { BalloonStatsPath(device: $0) })
profile.readConfig = BalloonConfig.read
PluginMain.run(profile)
