// virtiod-9p: the virtio 9P transport (device ID 9, mount tag feature) as a
// FUSE filesystem on this machine: a 9P2000.L client on the request queue,
// a FUSE server on the `fuse` endpoint's /dev/fuse (the supervisor mounts
// it at MountPoint= and keeps it mounted across reloads and restarts).
import VirtioCore
import VirtiodPluginRuntime

var profile = PluginProfile(
    name: "9p", deviceType: .ninePTransport, stub: false,
    features: FeatureRequest(required: NinePFeatures.mountTag.rawValue),
    queues: ["requests"],
    dataPath: { device in try NinePDataPath(device: device) })
profile.readConfig = NinePConfig.read
PluginMain.run(profile)
