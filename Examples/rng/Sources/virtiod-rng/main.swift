// virtiod-rng: the entropy device (virtio 1.2 §5.4) as a virtiod plugin
// built outside virtiod's tree. The device fills the buffers it is given
// with random bytes; this plugin writes them into the kernel's random pool
// through the `random` endpoint (/dev/random, opened for writing by the
// supervisor), paced by a timer: `Option=rate=BYTES` per second in the
// device's [Device] rule (default 4096).
import VirtioCore
import VirtiodPluginRuntime

var profile = PluginProfile(
    name: "rng", deviceType: .entropy, stub: false,
    features: FeatureRequest(required: 0, wanted: 0),
    queues: ["requestq"],
    dataPath: { try EntropyDataPath(device: $0) })
profile.version = "1.0.0"
PluginMain.run(profile)
