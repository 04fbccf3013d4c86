// virtiod-block: the block device (virtio 1.2 §5.2). Stub: negotiates what a
// block driver uses, sets up request queue 0, reports capacity, block size,
// seg_max and topology, and asks the disk for its serial (GET_ID). The
// ublk/NBD export comes later.
import VirtioCore
import VirtiodPluginRuntime

let wanted: BlockFeatures = [.sizeMax, .segMax, .geometry, .readOnly, .blockSize, .flush, .topology,
                             .configWCE, .multiqueue, .discard, .writeZeroes]
var profile = PluginProfile(
    name: "block", deviceType: .block, stub: true,
    features: FeatureRequest(required: 0, wanted: wanted.rawValue),
    queues: ["requestq0"])
profile.readConfig = BlockConfig.read
profile.identify = BlockConfig.serial
PluginMain.run(profile)
