import Testing
import VirtioCore
import VirtioSoftDevice

/// A device that lies breaks only its own queue, with a precise error, and
/// the queue works again after reset. Each case fails if its check is removed.
@Suite struct HostileDeviceTests {
    func prepared(_ layout: RingLayout) throws -> (RingFixture, DeviceChain) {
        let f = try RingFixture(layout, size: 8)
        try f.addPair(token: 0, length: 16)
        try f.addPair(token: 1, length: 16)
        _ = f.queue.publish()
        var c = DeviceChain()
        #expect(f.device.pop(into: &c))
        return (f, c)
    }

    func expectBrokenAndRecoverable(_ f: RingFixture, _ v: DeviceViolation, inFlight: [UInt64] = [0, 1]) throws {
        #expect(f.queue.brokenReason == v)
        #expect(throws: VirtqueueError.broken(v)) { try f.queue.popUsed() }
        #expect(throws: VirtqueueError.broken(v)) { try f.addPair(token: 3) }
        // Another queue in the same region is unaffected.
        let other = try RingFixture(f.queue.layout, size: 8)
        try other.addPair(token: 0)
        _ = other.queue.publish()
        other.deviceCompleteAll()
        #expect(try other.drainUsed().count == 1)
        // Reset (with the device's queue reset) brings it back.
        #expect(f.queue.reset().sorted() == inFlight)
        #expect(!f.queue.isBroken)
        let dev = DeviceQueue(mirroring: f.queue, eventIndex: false)
        try f.addPair(token: 4)
        _ = f.queue.publish()
        var c = DeviceChain()
        #expect(dev.pop(into: &c))
        dev.push(c, length: 16)
        _ = dev.commit()
        #expect(try f.queue.popUsed()?.token == 4)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func usedIDOutOfRange(layout: RingLayout) throws {
        let (f, _) = try prepared(layout)
        f.device.push(id: layout == .split ? 4000 : 200, length: 0)
        _ = f.device.commit()
        let v = DeviceViolation.usedIDOutOfRange(id: layout == .split ? 4000 : 200, queueSize: 8)
        #expect(throws: VirtqueueError.broken(v)) { try f.queue.popUsed() }
        try expectBrokenAndRecoverable(f, v)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func usedIDNotInFlight(layout: RingLayout) throws {
        let (f, c) = try prepared(layout)
        // Return a legitimate chain, then the same id again: a double completion.
        f.device.push(c, length: 4)
        f.device.push(c, length: 4)
        _ = f.device.commit()
        #expect(try f.queue.popUsed()?.length == 4)
        let v = DeviceViolation.usedIDNotInFlight(id: UInt32(c.id))
        #expect(throws: VirtqueueError.broken(v)) { try f.queue.popUsed() }
        try expectBrokenAndRecoverable(f, v, inFlight: [1])
    }

    @Test(arguments: [RingLayout.split, .packed])
    func usedIDThatWasNeverAHead(layout: RingLayout) throws {
        let (f, c) = try prepared(layout)
        // Split: descriptor id+1 is the second descriptor of the chain, not a head.
        // Packed: ID 5 was never handed out.
        let id = layout == .split ? UInt32(c.id) + 1 : 5
        f.device.push(id: id, length: 0)
        _ = f.device.commit()
        let v = DeviceViolation.usedIDNotInFlight(id: id)
        #expect(throws: VirtqueueError.broken(v)) { try f.queue.popUsed() }
        try expectBrokenAndRecoverable(f, v)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func usedLengthBeyondTheBuffer(layout: RingLayout) throws {
        let (f, c) = try prepared(layout)
        f.device.push(c, length: 17) // the chain has 16 writable bytes
        _ = f.device.commit()
        let v = DeviceViolation.usedLengthTooLong(id: UInt32(c.id), length: 17, capacity: 16)
        #expect(throws: VirtqueueError.broken(v)) { try f.queue.popUsed() }
        try expectBrokenAndRecoverable(f, v)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func oversizedLengthCostsOneBufferWhereTolerated(layout: RingLayout) throws {
        let f = try RingFixture(layout, size: 8, tolerateOversizedLength: true)
        try f.addPair(token: 0, length: 16)
        try f.addPair(token: 1, length: 16)
        _ = f.queue.publish()
        var a = DeviceChain(), b = DeviceChain()
        #expect(f.device.pop(into: &a) && f.device.pop(into: &b))
        f.device.push(a, length: 9000) // the chain has 16 writable bytes
        f.device.push(b, length: 5)
        _ = f.device.commit()
        let bad = try #require(try f.queue.popUsed())
        #expect(bad.token == 0 && bad.lengthExceeded && bad.length == 0)
        let good = try #require(try f.queue.popUsed())
        #expect(good.token == 1 && !good.lengthExceeded && good.length == 5)
        #expect(!f.queue.isBroken && f.queue.inFlight == 0)
    }

    @Test func usedIndexJumpingPastTheRing() throws {
        let (f, c) = try prepared(.split)
        f.device.push(c, length: 0)
        f.device.setUsedIndex(31872) // cf. "Guest moved used index from 1 to 31872"
        let v = DeviceViolation.usedIndexJumped(from: 0, to: 31872, inFlight: 2)
        #expect(throws: VirtqueueError.broken(v)) { try f.queue.popUsed() }
        try expectBrokenAndRecoverable(f, v)
    }

    @Test func usedIndexAheadOfWhatIsInFlight() throws {
        // Only 2 chains in flight, device claims 3 used entries.
        let (f, c) = try prepared(.split)
        f.device.push(c, length: 0)
        f.device.setUsedIndex(3)
        let v = DeviceViolation.usedIndexJumped(from: 0, to: 3, inFlight: 2)
        #expect(throws: VirtqueueError.broken(v)) { try f.queue.popUsed() }
        try expectBrokenAndRecoverable(f, v)
    }

    @Test func violationIsReportedInWords() {
        #expect(DeviceViolation.usedIndexJumped(from: 1, to: 31872, inFlight: 4).description
                == "device moved the used index from 1 to 31872 with only 4 chains in flight")
        #expect("\(VirtqueueError.broken(.usedLengthTooLong(id: 3, length: 9000, capacity: 1500)))"
                == "queue broken: device wrote 9000 bytes into chain 3 of 1500 writable bytes")
    }
}

/// The software device refuses a driver that breaks the rules, without crashing.
@Suite struct HostileDriverTests {
    @Test func loopingChainIsRefused() throws {
        let region = DMARegion(anonymousSize: 1 << 20)
        let g = QueueGeometry(layout: .split, size: 4)
        let area = DMASlice(offset: 0, length: g.totalLength)
        let mem = RingMemory(region: region, area: area)
        // desc 0 → 1 → 0 …, both NEXT
        for d in 0..<2 {
            mem.store64(16 * d, region.deviceBase + 8192)
            mem.store32(16 * d + 8, 8)
            mem.store16(16 * d + 12, 1)
            mem.store16(16 * d + 14, UInt16(1 - d))
        }
        mem.store16(g.driverAreaOffset + 4, 0)
        mem.store16(g.driverAreaOffset + 2, 1)
        let dev = DeviceQueue(layout: .split, size: 4, region: region, area: area, eventIndex: false)
        var c = DeviceChain()
        #expect(!dev.pop(into: &c))
        #expect(dev.violation == .chainTooLong)
    }

    @Test func addressOutsideMemoryIsRefused() throws {
        let f = try RingFixture(.packed, size: 4)
        try f.queue.add([.readable(f.region.deviceBase + UInt64(f.region.size) - 4, 8)], token: 0)
        _ = f.queue.publish()
        var c = DeviceChain()
        #expect(!f.device.pop(into: &c))
        #expect(f.device.violation == .addressOutsideMemory(address: f.region.deviceBase + UInt64(f.region.size) - 4, length: 8))
    }
}
