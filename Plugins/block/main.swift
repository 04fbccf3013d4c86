// virtiod-block: the block device (virtio 1.2 §5.2) exported to the host as
// /dev/ublkbN over the `ublk` endpoint where the kernel has ublk_drv, else
// as /dev/nbdN over the `nbd` endpoint (one NBD connection per request
// queue); reads, writes, flushes, discards and zeroing passed to the disk
// without a copy here, requests in flight kept across reloads.
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

let wanted: BlockFeatures = [.sizeMax, .segMax, .geometry, .readOnly, .blockSize, .flush, .topology,
                             .multiqueue, .discard, .writeZeroes]
var profile = PluginProfile(
    name: "block", deviceType: .block, stub: false,
    features: FeatureRequest(required: 0, wanted: wanted.rawValue),
    queues: ["requestq0"], // the plan below decides
    dataPath: { device -> any DataPath in
        device.endpoints["ublk"] != nil ? try UblkDataPath(device: device) : try BlockDataPath(device: device)
    })
profile.queuePlan = { negotiated, device in
    device.endpoints["ublk"] != nil ? try UblkDataPath.plan(negotiated: negotiated, device: device)
        : try BlockDataPath.plan(negotiated: negotiated, device: device)
}
profile.readConfig = BlockConfig.read
profile.identify = BlockConfig.serial
profile.ioFlusher = true
#if FUZZING
FuzzDriver.run(fuzzBlockRecord)
#endif
PluginMain.run(profile)
