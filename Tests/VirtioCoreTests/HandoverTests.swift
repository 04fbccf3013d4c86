import Foundation
import Synchronization
import SystemPackage
import Testing
import VirtioCore
import VirtioSoftDevice
import VirtioSystem

@Suite struct QueueStateTests {
    func liveState(_ layout: RingLayout) throws -> (RingFixture, QueueState) {
        let f = try RingFixture(layout, size: 8, eventIndex: true, indirect: 4)
        for t in 0..<3 { try f.addPair(token: t) }
        try f.queue.add([.readable(f.address(9), 4), .readable(f.address(9), 4), .writable(f.address(40), 8)], token: 9, indirect: true)
        _ = f.queue.publish()
        var c = DeviceChain()
        #expect(f.device.pop(into: &c))
        f.device.push(c, length: 2)
        _ = f.device.commit()
        #expect(try f.queue.popUsed()?.token == 0)
        return (f, f.queue.state)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func codecRoundTrips(layout: RingLayout) throws {
        let (_, s) = try liveState(layout)
        let bytes = QueueStateCodec.encode(s)
        #expect(bytes.count == QueueStateCodec.encodedLength(size: 8))
        #expect(try QueueStateCodec.decode(bytes) == s)
    }

    @Test func damagedRecordsAreRejectedNotMisread() throws {
        let (_, s) = try liveState(.split)
        let good = QueueStateCodec.encode(s)
        var flipped = good
        flipped[40] ^= 0x10
        #expect(throws: QueueStateError.checksumMismatch) { try QueueStateCodec.decode(flipped) }
        var newer = good
        newer[4] = 2
        #expect(throws: QueueStateError.unsupportedVersion(2)) { try QueueStateCodec.decode(newer) }
        #expect(throws: QueueStateError.notAQueueState) { try QueueStateCodec.decode([UInt8](repeating: 0, count: 64)) }
        #expect(throws: QueueStateError.truncated(needed: good.count, have: good.count - 1)) {
            try QueueStateCodec.decode(good.dropLast())
        }
    }

    @Test func inconsistentStatesAreRejected() throws {
        let (f, s) = try liveState(.split)
        var loop = s
        loop.links[Int(loop.freeHead)] = loop.freeHead // free list points at itself
        #expect(loop.inconsistency() != nil)
        #expect(throws: QueueStateError.self) { try QueueStateCodec.decode(QueueStateCodec.encode(loop)) }
        var count = s
        count.freeDescriptors += 1
        #expect(throws: QueueStateError.self) { try Virtqueue(restoring: count, region: f.region) }
        var flight = s
        flight.chains[Int(flight.freeHead)].inFlight = true
        #expect(flight.inconsistency() != nil)
        var outside = s
        outside.area.offset = f.region.size
        #expect(throws: QueueStateError.self) { try Virtqueue(restoring: outside, region: f.region) }
    }

    @Test(arguments: [RingLayout.split, .packed])
    func restoredQueueContinuesInProcess(layout: RingLayout) throws {
        let (f, s) = try liveState(layout)
        let q2 = try Virtqueue(restoring: try QueueStateCodec.decode(QueueStateCodec.encode(s)), region: f.region)
        #expect(q2.inFlight == 3)
        f.deviceCompleteAll()
        var tokens: [UInt64] = []
        while let u = try q2.popUsed() { tokens.append(u.token) }
        #expect(tokens.sorted() == [1, 2, 9])
        // It keeps going across wraps with the original device side.
        for round in 0..<50 {
            try q2.add([.writable(f.address(round % 16), 8)], token: UInt64(round))
            _ = q2.publish()
            f.deviceCompleteAll()
            #expect(try q2.popUsed()?.token == UInt64(round))
        }
    }
}

/// Two real processes drive one live queue in a shared memfd, one after the
/// other; the device (here, a thread) never stops or resets.
@Suite struct ProcessHandoverTests {
    static var probePath: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir.appendingPathComponent("HandoverProbe").path
    }

    /// Device side: echoes ~seq, completes in a shuffled order, counts every seq it sees.
    final class EchoDevice: @unchecked Sendable {
        let queue: DeviceQueue
        let region: DMARegion
        let seen = Mutex<[Int]>([])
        let stop = Atomic<Bool>(false)
        init(_ region: DMARegion, layout: RingLayout, total: Int) {
            self.region = region
            queue = DeviceQueue(layout: layout, size: HandoverLayout.queueSize, region: region, area: HandoverLayout.queueArea, eventIndex: false)
            seen.withLock { $0 = Array(repeating: 0, count: total) }
        }
        func run() {
            var rng = SplitMix64(seed: 7)
            var held: [DeviceChain] = []
            var chain = DeviceChain()
            var idle = 0
            while !stop.load(ordering: .relaxed) {
                var progressed = false
                while queue.pop(into: &chain) {
                    let seq = queue.readBytes(chain, count: 8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
                    seen.withLock { if seq < $0.count { $0[seq] += 1 } }
                    held.append(chain)
                    progressed = true
                }
                // Complete some (not all) of what is held, out of order.
                let n = idle > 50 ? held.count : held.count / 2
                for _ in 0..<n {
                    let c = held.remove(at: Int(rng.next() % UInt64(held.count)))
                    let seq = queue.readBytes(c, count: 8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
                    queue.write(c, bytes: withUnsafeBytes(of: ~seq) { Array($0) })
                    queue.push(c, length: 8)
                    progressed = true
                }
                _ = queue.commit()
                idle = progressed ? 0 : idle + 1
                if !progressed { usleep(100) }
            }
        }
    }

    func runProbe(_ role: String, _ layout: RingLayout, total: Int, stopAfter: Int, memory: SharedMemory) throws -> [String] {
        let out = try UnixPipe()
        let child = try ChildProcess.spawn(Self.probePath, arguments: [role, "\(layout)", "\(total)", "\(stopAfter)"],
                                           fds: [3: memory.fd], stdout: out.write)
        try out.write.close()
        let text = String(decoding: try out.readAll(), as: UTF8.self)
        try out.read.close()
        let status = try child.wait()
        #expect(status == 0, "probe \(role) exited with \(status): \(text)")
        return text.split(separator: "\n").map(String.init)
    }

    @Test(arguments: [RingLayout.split, .packed])
    func liveQueueMovesToAnotherProcessWithNothingLostOrDuplicated(layout: RingLayout) throws {
        let total = 3000
        let memory = try SharedMemory(name: "virtiod-handover-test", size: HandoverLayout.regionSize)
        let region = memory.region(deviceBase: HandoverLayout.deviceBase)
        let device = EchoDevice(region, layout: layout, total: total)
        let thread = Thread { device.run() }
        thread.start()
        defer { device.stop.store(true, ordering: .relaxed) }

        let first = try runProbe("first", layout, total: total, stopAfter: 1000, memory: memory)
        let second = try runProbe("second", layout, total: total, stopAfter: 0, memory: memory)
        device.stop.store(true, ordering: .relaxed)

        let left = first.compactMap { $0.hasPrefix("left ") ? Int($0.dropFirst(5)) : nil }.first
        let restored = second.compactMap { $0.hasPrefix("restored ") ? Int($0.dropFirst(9)) : nil }.first
        #expect(left != nil && left! > 0, "first process must leave chains in flight: \(first.suffix(3))")
        #expect(restored == left)
        var count = [Int](repeating: 0, count: total)
        for line in first + second where line.hasPrefix("done ") {
            let f = line.split(separator: " ")
            #expect(f[2] == "8" && f[3] == "OK", "\(line)")
            count[Int(f[1])!] += 1
        }
        #expect(count.allSatisfy { $0 == 1 }, "lost: \(count.indices.filter { count[$0] == 0 }.prefix(10)), duplicated: \(count.indices.filter { count[$0] > 1 }.prefix(10))")
        #expect(device.seen.withLock { $0 }.allSatisfy { $0 == 1 }, "the device saw some chain twice or never")
        #expect(first.filter { $0.hasPrefix("done ") }.count >= 1000)
    }
}

@Suite struct StateAreaTests {
    @Test func storesAndLoadsAndRejectsALyingLength() throws {
        let region = DMARegion(anonymousSize: 1 << 16)
        let area = StateArea(region: region, slice: DMASlice(offset: 4096, length: 256))
        try area.store([1, 2, 3], word: 42)
        let (record, word) = try area.load()
        #expect(record == [1, 2, 3] && word == 42)
        #expect(throws: QueueStateError.truncated(needed: 241, have: 240)) { try area.store([UInt8](repeating: 0, count: 241), word: 0) }
        // Someone scribbled a huge length into the shared header: an error, not a read past the area.
        region.pointer(DMASlice(offset: 4096 + 8, length: 4)).storeBytes(of: UInt32(0xffff_0000), as: UInt32.self)
        #expect(throws: QueueStateError.truncated(needed: 0xffff_0000, have: 240)) { try area.load() }
    }
}
