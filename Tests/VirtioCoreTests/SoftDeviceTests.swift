import Foundation
import Synchronization
import Testing
import VirtioCore
import VirtioSoftDevice

/// A driver brought up through `Transport` against the software devices.
@Suite struct SoftDeviceTests {
    let base = TransportFeatures.version1.rawValue | TransportFeatures.accessPlatform.rawValue

    /// Initialise `dev`, set up its queues in `region`, return them.
    func bringUp(_ dev: SoftDevice, layout: RingLayout, allocator: inout DMAAllocator) throws -> [Virtqueue] {
        let packed = layout == .packed ? TransportFeatures.ringPacked.rawValue : 0
        var queues: [Virtqueue] = []
        var alloc = allocator
        try DeviceInitializer(transport: dev).run(
            features: FeatureRequest(required: base | packed, wanted: TransportFeatures.eventIndex.rawValue)
        ) { negotiated in
            for i in 0..<dev.queueCount {
                let q = try Virtqueue(layout: layout, size: dev.maxQueueSize(i), region: dev.region, allocator: &alloc,
                                      options: QueueOptions(negotiated: negotiated))
                try dev.setUpQueue(i, size: q.size, addresses: q.addresses, msixVector: UInt16(i))
                queues.append(q)
            }
        }
        allocator = alloc
        return queues
    }

    @Test(arguments: [RingLayout.split, .packed])
    func loopbackNetDeliversFramesAndCountsDrops(layout: RingLayout) throws {
        let region = DMARegion(anonymousSize: 8 << 20)
        var alloc = DMAAllocator(regionSize: region.size)
        let dev = SoftDevice(model: LoopbackNetModel(features: base | TransportFeatures.ringPacked.rawValue | TransportFeatures.eventIndex.rawValue, queueSize: 64), region: region)
        let q = try bringUp(dev, layout: layout, allocator: &alloc)
        let (rx, tx) = (q[0], q[1])
        #expect(try dev.readConfig(offset: 0, length: 6) == [0x52, 0x54, 0, 0x12, 0x34, 0x56])
        var pool = try DMABufferPool(allocator: &alloc, bufferSize: 2048, count: 64)
        // Post 8 receive buffers.
        for _ in 0..<8 {
            let b = pool.take()!
            try rx.add([.writable(region.deviceAddress(pool.slice(b)), 2048)], token: UInt64(b))
        }
        if rx.publish() { dev.notify(0) }
        // Send 10 frames: 8 arrive, 2 find no buffer.
        for i in 0..<10 {
            let b = pool.take()!
            let frame = [UInt8](repeating: 0, count: 12) + [UInt8](repeating: UInt8(i), count: 60 + i)
            region.pointer(pool.slice(b)).copyMemory(from: frame, byteCount: frame.count)
            try tx.add([.readable(region.deviceAddress(pool.slice(b)), frame.count)], token: UInt64(b))
            if tx.publish() { dev.notify(1) }
        }
        var got: [Int] = []
        while let u = try rx.popUsed() {
            let p = region.pointer(pool.slice(Int(u.token)))
            got.append(Int(u.length))
            #expect(p.load(fromByteOffset: 12, as: UInt8.self) == UInt8(got.count - 1))
            pool.give(Int(u.token))
        }
        while let u = try tx.popUsed() { pool.give(Int(u.token)) }
        #expect(got == (0..<8).map { 72 + $0 })
        let model = dev.model as! LoopbackNetModel
        #expect(model.delivered == 8 && model.dropped == 2)
        #expect(dev.interrupts[0] >= 1 && dev.interrupts[1] >= 1)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func ramBlockReadsBackWhatWasWritten(layout: RingLayout) throws {
        let region = DMARegion(anonymousSize: 4 << 20)
        var alloc = DMAAllocator(regionSize: region.size)
        let dev = SoftDevice(model: RAMBlockModel(sectors: 128, features: base | TransportFeatures.ringPacked.rawValue), region: region)
        let q = try bringUp(dev, layout: layout, allocator: &alloc)[0]
        #expect(try dev.readConfig(UInt64.self, at: 0) == 128)
        let hdr = try alloc.allocate(16), data = try alloc.allocate(4096), status = try alloc.allocate(1)
        func request(_ type: UInt32, sector: UInt64, length: Int, writeData: Bool) throws -> (UInt8, UInt32) {
            region.pointer(hdr).storeBytes(of: type, as: UInt32.self)
            region.pointer(hdr).storeBytes(of: sector, toByteOffset: 8, as: UInt64.self)
            region.pointer(status).storeBytes(of: 0xff, as: UInt8.self)
            var segs: [BufferSegment] = [.readable(region.deviceAddress(hdr), 16)]
            if length > 0 {
                segs.append(BufferSegment(address: region.deviceAddress(data), length: UInt32(length), deviceWritable: !writeData))
            }
            segs.append(.writable(region.deviceAddress(status), 1))
            try q.add(segs, token: 1, indirect: false)
            if q.publish() { dev.notify(0) }
            let u = try #require(try q.popUsed())
            return (region.pointer(status).load(as: UInt8.self), u.length)
        }
        for i in 0..<4096 { region.pointer(data).storeBytes(of: UInt8(truncatingIfNeeded: i * 7), toByteOffset: i, as: UInt8.self) }
        #expect(try request(1, sector: 100, length: 4096, writeData: true) == (0, 1))
        region.pointer(data).initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
        #expect(try request(0, sector: 100, length: 4096, writeData: false) == (0, 4097))
        #expect((0..<4096).allSatisfy { region.pointer(data).load(fromByteOffset: $0, as: UInt8.self) == UInt8(truncatingIfNeeded: $0 * 7) })
        #expect(try request(0, sector: 127, length: 1024, writeData: false).0 == 1) // past the end: IOERR
        #expect(try request(4, sector: 0, length: 0, writeData: false) == (0, 1))   // flush
        #expect(try request(99, sector: 0, length: 0, writeData: false).0 == 2)     // unsupported
        let (s, n) = try request(8, sector: 0, length: 20, writeData: false)        // GET_ID
        #expect(s == 0 && n == 21)
        #expect(String(decoding: (0..<10).map { region.pointer(data).load(fromByteOffset: $0, as: UInt8.self) }, as: UTF8.self) == "soft-ram-0")
    }

    @Test func deviceOnItsOwnThreadInterruptsTheDriver() async throws {
        let region = DMARegion(anonymousSize: 4 << 20)
        var alloc = DMAAllocator(regionSize: region.size)
        let dev = SoftDevice(model: EchoModel(features: base | TransportFeatures.eventIndex.rawValue, queueSize: 32), region: region)
        let q = try bringUp(dev, layout: .split, allocator: &alloc)[0]
        let runner = SoftDeviceRunner(device: dev)
        defer { runner.stop() }
        let irq = DispatchSemaphore(value: 0)
        dev.onInterrupt = { _ in irq.signal() }
        let pool = try DMABufferPool(allocator: &alloc, bufferSize: 64, count: 32)
        var done = 0
        for i in 0..<200 {
            let s = pool.slice(i % 16)
            try q.add([.readable(region.deviceAddress(s), 32), .writable(region.deviceAddress(s) + 32, 32)], token: UInt64(i))
            if q.publish() { dev.notify(0) }
            // Wait for the interrupt, then reap (re-enable + recheck, as a driver does).
            while done <= i {
                if !q.enableInterrupts() { #expect(irq.wait(timeout: .now() + 5) == .success) }
                while let u = try q.popUsed() { #expect(u.length == 32); done += 1 }
            }
        }
        #expect(done == 200)
        #expect(dev.interrupts[0] > 0 && dev.notifications[0] > 0)
    }
}
