// virtiod-9p: the 9P transport (virtio 9P, mount tag feature). Stub:
// negotiates MOUNT_TAG, sets up the request queue, reports the tag. The FUSE
// export comes later.
import VirtioCore
import VirtiodPluginRuntime

var profile = PluginProfile(
    name: "9p", deviceType: .ninePTransport, stub: true,
    features: FeatureRequest(required: NinePFeatures.mountTag.rawValue),
    queues: ["requests"])
profile.readConfig = NinePConfig.read
PluginMain.run(profile)
