import Testing
import VirtioCore
import VirtioSoftDevice

@Suite struct RingTests {
    @Test(arguments: [RingLayout.split, .packed])
    func roundTripCarriesDataAndWrapsManyTimes(layout: RingLayout) throws {
        // 8-entry ring, 70 000 chains: split indices wrap past 65 535, packed wrap counters flip thousands of times.
        let f = try RingFixture(layout, size: 8)
        var next = 0, received = 0
        for round in 0..<70_000 / 3 {
            for k in 0..<3 {
                let t = (next + k) % 16
                f.fill(t, with: [UInt8(truncatingIfNeeded: round), UInt8(k), 0xab])
                try f.addPair(token: t, length: 3)
            }
            next += 3
            _ = f.queue.publish()
            var c = DeviceChain()
            while f.device.pop(into: &c) {
                #expect(c.segments.count == 2 && !c.segments[0].isWritable && c.segments[1].isWritable)
                let data = f.device.readBytes(c, count: 3)
                f.device.write(c, bytes: data.reversed())
                f.device.push(c, length: 3)
            }
            _ = f.device.commit()
            for u in try f.drainUsed() {
                #expect(u.length == 3)
                let t = Int(u.token)
                #expect(f.bytes(t + 32, count: 3) == f.bytes(t, count: 3).reversed())
                received += 1
            }
            #expect(f.queue.freeDescriptors == 8)
        }
        #expect(received == 70_000 / 3 * 3)
        #expect(f.queue.inFlight == 0)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func chainsLongerThanFreeSpaceAreRefusedNotCorrupting(layout: RingLayout) throws {
        let f = try RingFixture(layout, size: 4)
        try f.addPair(token: 0)
        try f.addPair(token: 1)
        #expect(throws: VirtqueueError.full(needed: 2, free: 0)) { try f.addPair(token: 2) }
        #expect(throws: VirtqueueError.emptyChain) { try f.queue.add([], token: 9) }
        _ = f.queue.publish()
        #expect(f.deviceCompleteAll() == 2)
        #expect(try f.drainUsed().map(\.token).sorted() == [0, 1])
        try f.addPair(token: 2)
        #expect(f.queue.freeDescriptors == 2)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func indirectChainsTakeOneSlotAndReachTheDevice(layout: RingLayout) throws {
        let f = try RingFixture(layout, size: 4, indirect: 8)
        for t in 0..<4 {
            let segs: [BufferSegment] = (0..<6).map { i in i < 3 ? .readable(f.address(t, offset: i * 100), 10) : .writable(f.address(t + 32, offset: i * 100), 20) }
            try f.queue.add(segs, token: UInt64(t), indirect: true)
        }
        #expect(f.queue.freeDescriptors == 0)
        _ = f.queue.publish()
        var c = DeviceChain(), ids: [UInt16] = []
        while f.device.pop(into: &c) {
            #expect(c.segments.count == 6)
            #expect(c.readableLength == 30 && c.writableCapacity == 60)
            #expect(c.descriptorCount == 1)
            ids.append(c.id)
            f.device.push(c, length: 60)
        }
        _ = f.device.commit()
        #expect(ids.count == 4)
        let used = try f.drainUsed()
        #expect(used.map(\.token) == [0, 1, 2, 3])
        #expect(used.allSatisfy { $0.length == 60 })
        #expect(f.queue.freeDescriptors == 4)
        let tooMany = (0..<9).map { _ in BufferSegment.readable(f.address(0), 1) }
        #expect(throws: VirtqueueError.chainTooLong(segments: 9, maximum: 8)) { try f.queue.add(tooMany, token: 0, indirect: true) }
    }

    @Test(arguments: [RingLayout.split, .packed])
    func outOfOrderCompletionReturnsEveryTokenOnce(layout: RingLayout) throws {
        let region = DMARegion(anonymousSize: 4 << 20)
        var alloc = DMAAllocator(regionSize: region.size)
        let q = try Virtqueue(layout: layout, size: 16, region: region, allocator: &alloc)
        let model = EchoModel(features: 0, queueSize: 16, holdBack: 7)
        let dev = DeviceQueue(mirroring: q, eventIndex: false)
        let pool = try DMABufferPool(allocator: &alloc, bufferSize: 64, count: 32)
        var seen = [Int](repeating: 0, count: 5000), sent = 0, order: [UInt64] = []
        while sent < 5000 || q.inFlight > 0 {
            while sent < 5000, q.freeDescriptors >= 2 {
                let s = pool.slice(sent % 32)
                region.pointer(s).storeBytes(of: UInt64(sent), as: UInt64.self)
                try q.add([.readable(region.deviceAddress(s), 8), .writable(region.deviceAddress(s) + 8, 8)], token: UInt64(sent))
                sent += 1
            }
            _ = q.publish()
            _ = model.service(queue: 0, queues: [dev])
            if sent == 5000 { _ = model.flush([dev]) }
            while let u = try q.popUsed() {
                seen[Int(u.token)] += 1
                order.append(u.token)
                #expect(u.length == 8)
            }
        }
        #expect(seen.allSatisfy { $0 == 1 })
        // Completion really was out of order.
        #expect(order != order.sorted())
    }

    @Test(arguments: [RingLayout.split, .packed])
    func resetReclaimsEverythingInFlight(layout: RingLayout) throws {
        let f = try RingFixture(layout, size: 8)
        for t in 0..<4 { try f.addPair(token: t) }
        _ = f.queue.publish()
        #expect(f.queue.reset().sorted() == [0, 1, 2, 3])
        #expect(f.queue.freeDescriptors == 8 && f.queue.inFlight == 0)
        // A fresh device side sees a fresh ring.
        let dev = DeviceQueue(mirroring: f.queue, eventIndex: false)
        try f.addPair(token: 5)
        _ = f.queue.publish()
        var c = DeviceChain()
        #expect(dev.pop(into: &c))
        #expect(!dev.pop(into: &c))
    }
}
