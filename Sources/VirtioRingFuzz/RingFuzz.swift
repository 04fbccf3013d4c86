// Fuzz target over everything that parses device-written ring memory:
// the driver side of split and packed rings (used ring / used descriptors,
// event suppression areas), the queue-state decoder, and the software
// device's parsing of driver-written memory.
//
// Built with libFuzzer (see `make fuzz`), main.swift hands `fuzzRing` to
// libFuzzer; built normally, it replays the files or folders given, so a
// corpus can be rerun without libFuzzer (both through `FuzzDriver`).
//
// After every step the driver's bookkeeping must stay consistent
// (`QueueState.inconsistency() == nil`); anything else is a crash.
import VirtioCore
import VirtioSoftDevice

struct FuzzInput {
    let bytes: UnsafeRawBufferPointer
    var at = 0
    mutating func byte() -> UInt8? {
        guard at < bytes.count else { return nil }
        defer { at += 1 }
        return bytes[at]
    }
    mutating func u16() -> UInt16 { UInt16(byte() ?? 0) | UInt16(byte() ?? 0) << 8 }
}

let fuzzRegion = DMARegion(anonymousSize: 1 << 20)

func check(_ q: Virtqueue) {
    if let why = q.state.inconsistency() { fatalError("driver state inconsistent: \(why)") }
}

func fuzzRing(_ data: UnsafeRawBufferPointer) {
    var input = FuzzInput(bytes: data)
    guard let mode = input.byte() else { return }
    if mode == 0xff {
        // Decode arbitrary bytes as a queue state; if accepted, it must restore and round-trip.
        let rest = UnsafeRawBufferPointer(rebasing: data[1...])
        guard let s = try? QueueStateCodec.decode(rest) else { return }
        guard s.inconsistency() == nil else { fatalError("decoder accepted an inconsistent state") }
        guard s.area.offset + s.area.length <= fuzzRegion.size else { return }
        guard let q = try? Virtqueue(restoring: s, region: fuzzRegion) else { fatalError("consistent state did not restore") }
        guard QueueStateCodec.encode(q.state) == Array(rest.prefix(QueueStateCodec.encodedLength(size: s.size))) else {
            fatalError("state did not round-trip")
        }
        return
    }
    let layout: RingLayout = mode & 1 == 0 ? .split : .packed
    let eventIndex = mode & 2 != 0
    let indirect = mode & 4 != 0 ? 4 : 0
    let size = layout == .split ? 1 << Int((mode >> 3) % 6 + 1) : Int((mode >> 3) % 40 + 1)
    var alloc = DMAAllocator(regionSize: fuzzRegion.size)
    guard let q = try? Virtqueue(layout: layout, size: size, region: fuzzRegion, allocator: &alloc,
                                 options: QueueOptions(eventIndex: eventIndex, indirectCapacity: indirect)),
          let buffers = try? alloc.allocate(64 << 10) else { return }
    let device = DeviceQueue(mirroring: q, eventIndex: eventIndex)
    var chain = DeviceChain()
    var token: UInt64 = 0
    var queue = q

    while let op = input.byte() {
        switch op % 8 {
        case 0: // driver adds a chain
            let n = Int(input.byte() ?? 0) % 5 + 1
            var segs: [BufferSegment] = []
            for _ in 0..<n {
                let len = Int(input.u16() % 4096)
                let off = Int(input.u16()) % (buffers.length - 4096)
                segs.append(BufferSegment(address: fuzzRegion.deviceAddress(buffers) + UInt64(off), length: UInt32(len),
                                          deviceWritable: (input.byte() ?? 0) & 1 == 1))
            }
            token &+= 1
            _ = try? queue.add(segs, token: token, indirect: (input.byte() ?? 0) & 1 == 1)
        case 1:
            _ = queue.publish()
        case 2: // an honest device completes what it can
            var k = Int(input.byte() ?? 0) % 8
            while k > 0, device.pop(into: &chain) {
                device.push(chain, length: UInt32(input.u16()) % UInt32(max(1, chain.writableCapacity + 1)))
                k -= 1
            }
            _ = device.commit()
        case 3: // a hostile device writes anything anywhere in the ring memory
            let words = queue.memory.area.length / 2
            let first = Int(input.u16()) % words
            for w in first..<min(words, first + Int(input.byte() ?? 0) % 9) {
                queue.memory.store16(2 * w, input.u16())
            }
        case 4:
            // `try?` flattens: nil for "none left" and for a broken queue alike.
            while (try? queue.popUsed()) != nil {}
        case 5:
            if (input.byte() ?? 0) & 1 == 0 { queue.disableInterrupts() } else { _ = queue.enableInterrupts() }
        case 6: // hand the queue over to a "new process"
            let bytes = QueueStateCodec.encode(queue.state)
            guard let s = try? QueueStateCodec.decode(bytes), let q2 = try? Virtqueue(restoring: s, region: fuzzRegion) else {
                fatalError("a live queue's own state did not restore")
            }
            queue = q2
        default:
            if queue.isBroken { queue.reset() }
        }
        check(queue)
    }
}
