import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// The rng data path: buffers posted device-writable on the request queue
/// (virtio 1.2 §5.4.6: the device fills them and says how many bytes), whose
/// bytes go to the kernel's random pool. A timer posts the free buffers once
/// a second, so the pool gets at most `rate` bytes a second and the device
/// is never spun on.
final class EntropyDataPath: DataPath {
    static let bufferSize = 256
    let random: FileDescriptor
    let timer: TimerFD
    let rate: Int
    var pool: DMABufferPool?
    var bytes: UInt64 = 0
    var requests: UInt64 = 0
    var writeErrors: UInt64 = 0

    init(device: AttachedDevice) throws {
        let endpoint = try device.endpoint("random")
        guard let fd = endpoint.fds.first else { throw PluginError("the random endpoint came without an fd") }
        random = fd
        rate = device.info.options["rate"].flatMap(Int.init).map { max(Self.bufferSize, min($0, 1 << 20)) } ?? 4096
        timer = try TimerFD()
    }

    var pollFDs: [FileDescriptor] { [timer.fd] }

    func start(_ driver: DeviceDriver) throws {
        let queue = driver.queues[0].queue
        pool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: Self.bufferSize,
                                 count: min(queue.size, rate / Self.bufferSize))
        try post(driver)
        try timer.arm(after: 1, every: 1)
    }

    /// Every free buffer to the device, device-writable.
    func post(_ driver: DeviceDriver) throws {
        guard var pool else { return }
        let q = driver.queues[0]
        let region = driver.device.region
        var added = false
        while q.queue.freeDescriptors > 0, let slot = pool.take() {
            let s = pool.slice(slot)
            try q.queue.add([.writable(region.deviceAddress(s), s.length)], token: UInt64(slot))
            added = true
        }
        self.pool = pool
        if added, q.queue.publish() { driver.transport.notify(q.index) }
    }

    /// What the device filled goes to the random pool; the buffers wait for the next tick.
    func collect(_ driver: DeviceDriver) throws {
        guard var pool else { return }
        let region = driver.device.region
        while let used = try driver.queues[0].queue.popUsed() {
            let slot = Int(used.token)
            let s = pool.slice(slot)
            // The queue core checked used.length against the buffer's size.
            let n = Int(used.length)
            if n > 0 {
                // SAFETY: `region.pointer` checks the slice lies in the mapping; write(2) reads n ≤ s.length bytes.
                let written = Glibc.write(random.rawValue, region.pointer(s), n)
                if written == n { bytes &+= UInt64(n) } else { writeErrors &+= 1 }
            }
            requests &+= 1
            pool.give(slot)
        }
        self.pool = pool
    }

    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {
        _ = timer.consume()
        try collect(driver)
        try post(driver)
    }

    func interrupt(queue index: Int, _ driver: DeviceDriver) throws { try collect(driver) }
    func configChanged(_ driver: DeviceDriver) {}

    func counters(queue index: Int) -> [String: UInt64] {
        ["bytes": bytes, "requests": requests, "errors": writeErrors]
    }

    var facts: [String: ConfigValue] { ["feeds": .text("/dev/random"), "rate": .number(UInt64(rate))] }

    // MARK: hand-over

    struct Saved: Codable {
        var pool: PoolPlacement
        var bytes: UInt64, requests: UInt64, writeErrors: UInt64
    }

    var stateVersion: Int { 1 }

    func quiesce(_ driver: DeviceDriver) throws {
        try timer.disarm()
        try collect(driver)
    }

    func saveState() throws -> Data {
        guard let pool else { throw PluginError("no buffer pool") }
        return try JSONEncoder().encode(Saved(pool: PoolPlacement(pool), bytes: bytes, requests: requests, writeErrors: writeErrors))
    }

    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws {
        guard version == 1 else { throw PluginError("rng state version \(version) unknown (this plugin reads 1)") }
        let saved = try JSONDecoder().decode(Saved.self, from: state)
        guard saved.pool.bufferSize == Self.bufferSize, driver.queues.count == 1 else {
            throw PluginError("the record's buffers do not fit this plugin")
        }
        pool = try driver.restoredPool(saved.pool, queue: 0, "requestq")
        bytes = saved.bytes
        requests = saved.requests
        writeErrors = saved.writeErrors
    }

    func continueAfterHandover(_ driver: DeviceDriver) throws {
        try collect(driver)
        try post(driver)
        try timer.arm(after: 1, every: 1)
    }
}
