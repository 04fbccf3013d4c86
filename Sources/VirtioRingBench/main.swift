// virtio-ring-bench: descriptor round trips per second through the virtqueue
// core: driver add → publish → device pop → device push used → driver pop
// (which reclaims the descriptors). Single thread, device in the same process,
// no notifications, no data copies: it measures the ring bookkeeping itself.
//
//   virtio-ring-bench [--seconds S] [--size N] [--layout split|packed] [--batch B] [--json]
//
// Prints round trips/s for split and packed rings at batch 1 and 32 (median
// of 5 runs), and their ratio. A benchmark, not a test: it asserts nothing.
#if canImport(Glibc)
import Glibc
#endif
import VirtioCore
import VirtioSoftDevice

struct Options {
    var seconds = 0.4
    var size = 256
    var json = false
    var layouts: [RingLayout] = [.split, .packed]
    var batches = [1, 32]
}

var options = Options()
var it = CommandLine.arguments.dropFirst().makeIterator()
while let a = it.next() {
    switch a {
    case "--seconds": options.seconds = Double(it.next() ?? "") ?? options.seconds
    case "--size": options.size = Int(it.next() ?? "") ?? options.size
    case "--json": options.json = true
    case "--layout":
        guard let l = RingLayout(name: it.next() ?? "") else { print("--layout: split or packed"); exit(2) }
        options.layouts = [l]
    case "--batch":
        guard let b = Int(it.next() ?? ""), b >= 1, b <= 256 else { print("--batch: 1…256"); exit(2) }
        options.batches = [b]
    default:
        print("usage: virtio-ring-bench [--seconds S] [--size N] [--layout split|packed] [--batch B] [--json]")
        exit(2)
    }
}

/// One measurement: round trips per second for `layout` at `batch`.
func measure(_ layout: RingLayout, batch: Int, seconds: Double, size: Int) throws -> Double {
    let region = DMARegion(anonymousSize: 16 << 20)
    var alloc = DMAAllocator(regionSize: region.size)
    let q = try Virtqueue(layout: layout, size: size, region: region, allocator: &alloc)
    let dev = DeviceQueue(mirroring: q, eventIndex: false)
    let pool = try DMABufferPool(allocator: &alloc, bufferSize: 2048, count: batch)
    let segments = (0..<batch).map { BufferSegment.writable(region.deviceAddress(pool.slice($0)), 1514) }
    var chain = DeviceChain()
    var trips = 0
    let clock = ContinuousClock()
    let start = clock.now
    let end = start + .milliseconds(Int(seconds * 1000))
    try segments.withUnsafeBufferPointer { segments in
    while clock.now < end {
        for _ in 0..<1024 {
            for b in 0..<batch { try q.add(UnsafeBufferPointer(rebasing: segments[b..<b + 1]), token: UInt64(b)) }
            _ = q.publish()
            while dev.pop(into: &chain) { dev.push(chain, length: 64) }
            _ = dev.commit()
            while let u = try q.popUsed() { trips &+= Int(u.length >> 6) }
        }
    }
    }
    let elapsed = start.duration(to: clock.now)
    let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return Double(trips) / s
}

func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }

/// `x` with `digits` decimals (no Foundation in this binary: it is installed statically linked).
func fixed(_ x: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int((x * scale).rounded())
    let whole = n / Int(scale), frac = String(n % Int(scale))
    return "\(whole)." + String(repeating: "0", count: digits - frac.count) + frac
}

var results: [(layout: RingLayout, batch: Int, perSecond: Double)] = []
for layout in options.layouts {
    for batch in options.batches {
        var runs = try (0..<5).map { _ in try measure(layout, batch: batch, seconds: options.seconds, size: options.size) }
        runs.sort()
        results.append((layout, batch, runs[2]))
    }
}

if options.json {
    let items = results.map { "{\"layout\":\"\($0.layout)\",\"batch\":\($0.batch),\"round_trips_per_s\":\(Int($0.perSecond))}" }
    print("[" + items.joined(separator: ",") + "]")
} else {
    print("virtqueue round trips (add → device → used → reclaim), queue size \(options.size), single thread, median of 5")
    print("layout  batch  round trips/s")
    for r in results {
        print(pad(r.layout.description, 8) + pad(String(r.batch), 7) + fixed(r.perSecond / 1e6, 1) + " M/s")
    }
    for batch in options.batches {
        guard let s = results.first(where: { $0.layout == .split && $0.batch == batch })?.perSecond,
              let p = results.first(where: { $0.layout == .packed && $0.batch == batch })?.perSecond else { continue }
        print("packed/split at batch \(batch): \(fixed(p / s, 2))×")
    }
}
