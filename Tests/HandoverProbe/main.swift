// One driver process in the queue hand-over test (Tests/VirtioCoreTests/HandoverTests.swift).
//
//   HandoverProbe first|second LAYOUT TOTAL STOP_AFTER     (memfd of the DMA region on fd 3)
//
// "first" starts a fresh queue, sends chains carrying sequence numbers 0…,
// and after STOP_AFTER completions stops posting, writes its queue state into
// the state area and exits with chains still in flight. "second" restores
// that state and finishes the job. Both print one line per completion:
// "done SEQ LEN OK|BAD", and "restored N" / "left N" for the in-flight count.
import Glibc
import SystemPackage
import VirtioCore
import VirtioSoftDevice
import VirtioSystem

let layout = HandoverLayout.self
let args = CommandLine.arguments
guard args.count == 5, let ring = RingLayout(name: args[2]), let total = Int(args[3]), let stopAfter = Int(args[4]) else {
    print("usage: HandoverProbe first|second split|packed TOTAL STOP_AFTER")
    exit(2)
}
let memory = try SharedMemory(mapping: FileDescriptor(rawValue: 3), size: layout.regionSize, ownsFD: true)
let region = memory.region(deviceBase: layout.deviceBase)
let stateArea = StateArea(region: region, slice: layout.stateArea)

struct Probe {
    let queue: Virtqueue
    let region: DMARegion
    let total: Int
    var nextSeq: UInt64
    var completed = 0

    /// A broken hand-over must fail the test, not hang it.
    let deadline = ContinuousClock.now + .seconds(60)

    func checkDeadline() {
        if ContinuousClock.now > deadline {
            print("timeout: \(completed) completed, \(queue.inFlight) in flight, next \(nextSeq)")
            exit(3)
        }
    }

    mutating func post() throws {
        checkDeadline()
        while nextSeq < UInt64(total), queue.freeDescriptors >= 2 {
            let slot = layout.buffer(Int(nextSeq))
            region.pointer(slot).storeBytes(of: nextSeq, as: UInt64.self)
            try queue.add([.readable(region.deviceAddress(slot), 8), .writable(region.deviceAddress(slot) + 8, 8)], token: nextSeq)
            nextSeq += 1
        }
        _ = queue.publish() // the device polls; no doorbell in this test
    }

    mutating func reap() throws {
        while let u = try queue.popUsed() {
            let slot = layout.buffer(Int(u.token))
            let answer = region.pointer(slot).load(fromByteOffset: 8, as: UInt64.self)
            print("done \(u.token) \(u.length) \(answer == ~u.token ? "OK" : "BAD")")
            completed += 1
        }
    }
}

var probe: Probe
if args[1] == "first" {
    probe = Probe(queue: Virtqueue(layout: ring, size: layout.queueSize, region: region, area: layout.queueArea),
                  region: region, total: total, nextSeq: 0)
    while probe.completed < stopAfter {
        try probe.post()
        try probe.reap()
    }
    try probe.post() // leave a full ring behind
    try stateArea.store(QueueStateCodec.encode(probe.queue.state), word: probe.nextSeq)
    print("left \(probe.queue.inFlight)")
} else {
    let (record, nextSeq) = try stateArea.load()
    let state = try QueueStateCodec.decode(record)
    probe = Probe(queue: try Virtqueue(restoring: state, region: region), region: region, total: total, nextSeq: nextSeq)
    print("restored \(probe.queue.inFlight)")
    while probe.nextSeq < UInt64(total) || probe.queue.inFlight > 0 {
        try probe.post()
        try probe.reap()
    }
}
exit(0)
