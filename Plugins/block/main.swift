// virtiod-block: the block device (virtio 1.2 §5.2) exported to the host as
// /dev/nbdN over the `nbd` endpoint: one NBD connection per request queue,
// reads, writes, flushes, discards and zeroing passed to the disk without
// a copy here, hand-over of requests in flight across reloads.
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

let wanted: BlockFeatures = [.sizeMax, .segMax, .geometry, .readOnly, .blockSize, .flush, .topology,
                             .multiqueue, .discard, .writeZeroes]
var profile = PluginProfile(
    name: "block", deviceType: .block, stub: false,
    features: FeatureRequest(required: 0, wanted: wanted.rawValue),
    queues: ["requestq0"], // the plan below decides
    dataPath: { try BlockDataPath(device: $0) })
profile.queuePlan = { try BlockDataPath.plan(negotiated: $0, device: $1) }
profile.readConfig = BlockConfig.read
profile.identify = BlockConfig.serial
profile.ioFlusher = true
#if FUZZING
FuzzDriver.run(fuzzBlockRecord)
#endif
PluginMain.run(profile)
