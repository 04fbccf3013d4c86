import FoundationEssentials
import VirtioCore
import VirtiodProtocol

/// A standby successor runs the hand-over's code once on throwaway data
/// before it is told to take over (and a fresh plugin once it is up, for
/// its first hand-over): a queue with every slot in flight is
/// saved with `QueueStateCodec`, written as a `HandoverRecord` to a scratch
/// hand-over area, read back and restored. Nothing of the device is
/// touched. It pays, before the pause instead of in it, for what a fresh
/// process pays the first time it runs code: page faults on the
/// executable's text, and — in the test VM under TCG — translating every
/// new block of code, which made the successor's first record read, queue
/// restore and state decode take tens of milliseconds (and the first
/// message decoded). The same process later writes its own record with
/// warm code, too.
enum HandoverRehearsal {
    static func run(_ driver: DeviceDriver) {
        // The features the old plugin negotiated (read only) pick the ring layout.
        let negotiated = driver.transport.readDriverFeatures()
        let queues = driver.transport.queueCount
        let layout: RingLayout = TransportFeatures(rawValue: negotiated).contains(.ringPacked) ? .packed : .split
        let options = QueueOptions(negotiated: negotiated)
        let size = 256
        let region = DMARegion(anonymousSize: 2 << 20)
        var allocator = DMAAllocator(regionSize: region.size)
        do {
            let queue = try Virtqueue(layout: layout, size: size, region: region, allocator: &allocator, options: options)
            let buffers = try allocator.allocate(size * 64, alignment: 64)
            let base = region.deviceAddress(buffers)
            for i in 0..<size where queue.freeDescriptors > 0 {
                try queue.add([.writable(base + UInt64(i * 64), 64)], token: UInt64(i))
            }
            _ = queue.publish()
            let state = Data(QueueStateCodec.encode(queue.state))
            let record = HandoverRecord(
                plugin: "rehearsal", pluginVersion: "", address: "", negotiated: negotiated, allocatorCursor: allocator.cursor,
                queues: (0..<max(1, queues)).map { .init(index: $0, name: "q\($0)", maxSize: size, vector: 0, state: state) },
                identity: [:], stateVersion: 1, data: Data(count: 4096), reason: "rehearsal", savedAt: 0)
            let scratch = HandoverArea(region: DMARegion(anonymousSize: 1 << 20))
            try scratch.save(record)
            for q in try scratch.load().queues {
                _ = try Virtqueue(restoring: try QueueStateCodec.decode(q.state), region: region)
            }
            // The messages of the take-over: `resume` in, the first report out.
            _ = try PluginMessage.decode(PluginMessage(kind: .resume).encoded())
            _ = try PluginMessage.decode(PluginMessage(kind: .status, status: driver.report()).encoded())
            driver.dataPath?.rehearseState()
        } catch {
            PluginLog.warning("hand-over rehearsal failed (the take-over itself is not affected): \(error)")
        }
    }
}
