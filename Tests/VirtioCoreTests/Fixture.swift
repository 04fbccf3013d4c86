import VirtioCore
import VirtioSoftDevice

/// A driver queue and the device side mirroring it, in one anonymous region,
/// with a pool of 2 KiB buffers after the ring.
final class RingFixture {
    let region: DMARegion
    var allocator: DMAAllocator
    let queue: Virtqueue
    let device: DeviceQueue
    var pool: DMABufferPool
    var chain = DeviceChain()

    init(_ layout: RingLayout, size: Int = 8, eventIndex: Bool = false, indirect: Int = 0, buffers: Int = 64,
         tolerateOversizedLength: Bool = false) throws {
        region = DMARegion(anonymousSize: 4 << 20)
        allocator = DMAAllocator(regionSize: region.size)
        queue = try Virtqueue(layout: layout, size: size, region: region, allocator: &allocator,
                              options: QueueOptions(eventIndex: eventIndex, indirectCapacity: indirect,
                                                    tolerateOversizedLength: tolerateOversizedLength))
        device = DeviceQueue(mirroring: queue, eventIndex: eventIndex)
        pool = try DMABufferPool(allocator: &allocator, bufferSize: 2048, count: buffers)
    }

    func address(_ buffer: Int, offset: Int = 0) -> UInt64 { region.deviceAddress(pool.slice(buffer)) + UInt64(offset) }

    func bytes(_ buffer: Int, count: Int) -> [UInt8] {
        let p = region.pointer(pool.slice(buffer))
        return (0..<count).map { p.load(fromByteOffset: $0, as: UInt8.self) }
    }

    func fill(_ buffer: Int, with bytes: [UInt8]) {
        let p = region.pointer(pool.slice(buffer))
        for (i, b) in bytes.enumerated() { p.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
    }

    /// Add a chain of one readable and one writable buffer, token = readable buffer index.
    func addPair(token: Int, length: Int = 16, indirect: Bool = false) throws {
        try queue.add([.readable(address(token), length), .writable(address(token + 32), length)],
                      token: UInt64(token), indirect: indirect)
    }

    /// Device: pop everything and complete it with `length` (or the writable size).
    @discardableResult
    func deviceCompleteAll(length: UInt32? = nil) -> Int {
        var n = 0
        while device.pop(into: &chain) {
            device.push(chain, length: length ?? UInt32(chain.writableCapacity))
            n += 1
        }
        _ = device.commit()
        return n
    }

    func drainUsed() throws -> [UsedBuffer] {
        var out: [UsedBuffer] = []
        while let u = try queue.popUsed() { out.append(u) }
        return out
    }
}
