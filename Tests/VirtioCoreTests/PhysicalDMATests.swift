import Testing
import VirtioCore
import VirtioSoftDevice

/// DMA memory as vfio's no-IOMMU mode gives it: hugepages, each at its own
/// physical address (`DMAAddressMap` segments), here 2 MiB segments of an
/// anonymous mapping with made-up, out-of-order "physical" addresses.
@Suite struct PhysicalDMATests {
    static let segment = 2 << 20
    /// Segment i's device address: deliberately not ascending, not adjacent.
    static let bases: [UInt64] = [0x7_4000_0000, 0x20_0000, 0x1_0060_0000, 0x3_0000_0000]

    static func region() -> DMARegion {
        let scratch = DMARegion(anonymousSize: bases.count * segment)
        let map = DMAAddressMap(segmentSize: segment, bases: bases)!
        return DMARegion(base: scratch.base, size: scratch.size, addressMap: map, owner: scratch)
    }

    @Test func offsetsBecomeEachSegmentsAddressAndBack() throws {
        let r = Self.region()
        #expect(r.segmentSize == Self.segment)
        #expect(r.deviceAddress(DMASlice(offset: 10, length: 100)) == Self.bases[0] + 10)
        #expect(r.deviceAddress(DMASlice(offset: 3 * Self.segment + 4096, length: 8)) == Self.bases[3] + 4096)
        // Untrusted addresses: inside one segment, or nothing.
        #expect(r.slice(deviceAddress: Self.bases[2] + 64, length: 512) == DMASlice(offset: 2 * Self.segment + 64, length: 512))
        #expect(r.slice(deviceAddress: Self.bases[1] + UInt64(Self.segment) - 8, length: 16) == nil)
        #expect(r.slice(deviceAddress: 0x1000, length: 4) == nil)
        #expect(r.slice(deviceAddress: Self.bases[0] - 1, length: 1) == nil)
        #expect(DMAAddressMap(segmentSize: Self.segment, bases: [0x1000]) == nil, "a base off the segment boundary")
        #expect(DMAAddressMap(segmentSize: 3 << 20, bases: [0]) == nil, "not a power of two")
        // The linear map keeps the old rule.
        let linear = DMAAddressMap.linear(0x1_0000_0000)
        #expect(linear.address(5) == 0x1_0000_0005)
        #expect(linear.slice(deviceAddress: 0x1_0000_0000 + 4092, length: 8, regionSize: 4096) == nil)
    }

    @Test func theAllocatorMovesPiecesOnRatherThanCrossASegment() throws {
        var a = DMAAllocator(regionSize: 4 * Self.segment, segmentSize: Self.segment)
        let first = try a.allocate(Self.segment - 8192, alignment: 4096)
        let second = try a.allocate(64 << 10, alignment: 4096)
        #expect(first.offset == 0)
        #expect(second.offset == Self.segment, "64 KiB did not fit the 8 KiB left in segment 0")
        let big = try a.allocate(Self.segment + 1, alignment: 64)
        #expect(big.offset == 2 * Self.segment, "a piece larger than a segment starts at one")
        #expect(throws: DMAAllocationError.self) { _ = try a.allocate(Self.segment, alignment: 64) }
    }

    @Test(arguments: [2048, 4096, 65536 + 64, (64 << 10) + 64])
    func poolBuffersNeverCrossASegmentAndTheLayoutRebuildsFromItsPlacement(bufferSize: Int) throws {
        let r = Self.region()
        var a = DMAAllocator(regionSize: r.size, segmentSize: r.segmentSize)
        _ = try a.allocate(12345)
        let count = min(64, (3 * Self.segment) / bufferSize)
        let pool = try DMABufferPool(allocator: &a, bufferSize: bufferSize, count: count)
        #expect(pool.count == count)
        var seen = Set<Int>()
        for i in 0..<count {
            let s = pool.slice(i)
            #expect(r.addressMap.isContiguous(offset: s.offset, length: s.length), "buffer \(i) at \(s) crosses a segment")
            #expect(s.end! <= pool.area.end!)
            #expect(seen.insert(s.offset).inserted)
            _ = r.deviceAddress(s)
        }
        // No two buffers overlap.
        let sorted = (0..<count).map { pool.slice($0) }.sorted { $0.offset < $1.offset }
        for (x, y) in zip(sorted, sorted.dropFirst()) { #expect(!x.overlaps(y)) }
        // A successor with the same placement gets the same buffers.
        let again = try #require(DMABufferPool(area: pool.area, bufferSize: bufferSize, segmentSize: r.segmentSize, inUse: [0]))
        #expect((0..<count).allSatisfy { again.slice($0) == pool.slice($0) })
        #expect(again.freeCount == count - 1)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func aRingOverHugepagesCarriesWholeBuffersToTheDevice(layout: RingLayout) throws {
        let r = Self.region()
        var a = DMAAllocator(regionSize: r.size, segmentSize: r.segmentSize)
        let queue = try Virtqueue(layout: layout, size: 64, region: r, allocator: &a,
                                  options: QueueOptions(indirectCapacity: 4))
        let device = DeviceQueue(mirroring: queue, eventIndex: false)
        var pool = try DMABufferPool(allocator: &a, bufferSize: 65600, count: 60)
        var chain = DeviceChain()
        for round in 0..<3 {
            var sent: [Int: UInt8] = [:]
            for k in 0..<20 {
                let b = pool.take()!
                let tag = UInt8(truncatingIfNeeded: round * 20 + k)
                r.pointer(pool.slice(b)).initializeMemory(as: UInt8.self, repeating: tag, count: 65600)
                try queue.add([.readable(r.deviceAddress(pool.slice(b)), 65600)], token: UInt64(b), indirect: k % 2 == 0)
                sent[b] = tag
            }
            _ = queue.publish()
            var popped = 0
            while device.pop(into: &chain) {
                let s = try #require(chain.segments.first).slice
                let p = r.pointer(s)
                let first = p.load(as: UInt8.self), last = p.load(fromByteOffset: s.length - 1, as: UInt8.self)
                // The device found exactly the buffer the driver filled.
                let b = try #require((0..<pool.count).first { pool.slice($0).offset == s.offset })
                #expect(first == sent[b] && last == sent[b] && s.length == 65600)
                device.push(chain, length: 0)
                popped += 1
            }
            _ = device.commit()
            #expect(popped == 20)
            while let u = try queue.popUsed() {
                #expect(sent.removeValue(forKey: Int(u.token)) != nil)
                pool.give(Int(u.token))
            }
            #expect(sent.isEmpty)
        }
    }

    @Test func aRecordedQueueAreaAcrossAHugepageIsRefusedNotTrapped() throws {
        let r = Self.region()
        var a = DMAAllocator(regionSize: r.size, segmentSize: r.segmentSize)
        let queue = try Virtqueue(layout: .split, size: 64, region: r, allocator: &a)
        var state = queue.state
        #expect(throws: Never.self) { _ = try Virtqueue(restoring: state, region: r) }
        // The same area moved to straddle the end of the first hugepage (a lying hand-over record).
        state.area = DMASlice(offset: Self.segment - 64, length: state.area.length)
        #expect(state.area.length > 64)
        #expect(throws: QueueStateError.self) { _ = try Virtqueue(restoring: state, region: r) }
    }
}
