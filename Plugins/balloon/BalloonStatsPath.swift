import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// The stats queue (virtio 1.2 §5.5.6.3): one buffer, filled with the
/// guest's figures and given to the device, which holds it until it wants
/// new ones (QEMU: at each `guest-stats-polling-interval`) and then returns
/// it used; each return is answered with fresh figures in the same buffer.
/// Inflating and deflating are not done yet: the target is only reported.
final class BalloonStatsPath: DataPath {
    let meminfo: String
    let vmstat: String
    var pool: DMABufferPool?
    /// Position of `statsq` in `driver.queues` (nil: STATS_VQ not negotiated).
    var position: Int?
    var updates: UInt64 = 0
    var readErrors: UInt64 = 0

    init(device: AttachedDevice, procRoot: String = "/proc") {
        meminfo = procRoot + "/meminfo"
        vmstat = procRoot + "/vmstat"
    }

    var pollFDs: [FileDescriptor] { [] }

    func start(_ driver: DeviceDriver) throws {
        guard let p = driver.queues.firstIndex(where: { $0.name == "statsq" }) else { return }
        position = p
        pool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: GuestMemoryStats.wireSize, count: 1)
        try offer(driver)
    }

    /// Fresh figures into the free buffer, and the buffer to the device.
    func offer(_ driver: DeviceDriver) throws {
        guard let p = position, var pool, let slot = pool.take() else { return }
        let s = pool.slice(slot)
        let region = driver.device.region
        let entries = TextFile.read(meminfo).flatMap { m in TextFile.read(vmstat).map { v in
            GuestMemoryStats.read(meminfo: m, vmstat: v, pageSize: UInt64(sysconf(Int32(_SC_PAGESIZE)))).entries
        } } ?? []
        guard !entries.isEmpty else {
            // No figures (no /proc?): the device gets none and keeps asking in vain; counted in read_errors.
            readErrors &+= 1
            pool.give(slot)
            self.pool = pool
            return
        }
        for (i, e) in entries.enumerated() {
            region.storeLE16(e.tag, s, at: i * GuestMemoryStats.entrySize)
            region.storeLE64(e.value, s, at: i * GuestMemoryStats.entrySize + 2)
        }
        let q = driver.queues[p]
        try q.queue.add([.readable(region.deviceAddress(s), entries.count * GuestMemoryStats.entrySize)], token: UInt64(slot))
        self.pool = pool
        updates &+= 1
        if q.queue.publish() { driver.transport.notify(q.index) }
    }

    /// The device gave the buffer back: it wants new figures.
    func interrupt(queue index: Int, _ driver: DeviceDriver) throws {
        guard index == position, var pool else { return }
        var returned = false
        while let used = try driver.queues[index].queue.popUsed() {
            // The queue core checked the token is one of ours in flight.
            pool.give(Int(used.token))
            returned = true
        }
        self.pool = pool
        if returned { try offer(driver) }
    }

    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {}
    func configChanged(_ driver: DeviceDriver) {}

    func counters(queue index: Int) -> [String: UInt64] {
        index == position ? ["updates": updates, "read_errors": readErrors] : [:]
    }

    var facts: [String: ConfigValue] {
        ["stats": .text(position == nil ? "not negotiated" : "served from /proc/meminfo, /proc/vmstat"),
         "inflate": .text("not yet (stub: the target is reported, no memory is held)")]
    }

    // MARK: hand-over: the buffer (with the device or free) and the counts.

    struct Saved: Codable {
        var pool: PoolPlacement?
        var updates: UInt64, readErrors: UInt64
    }

    var stateVersion: Int { 1 }
    func quiesce(_ driver: DeviceDriver) throws {}

    func saveState() throws -> Data {
        try JSONEncoder().encode(Saved(pool: pool.map(PoolPlacement.init), updates: updates, readErrors: readErrors))
    }

    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws {
        guard version == 1 else { throw PluginError("balloon state version \(version) unknown (this plugin reads 1)") }
        let saved = try JSONDecoder().decode(Saved.self, from: state)
        position = driver.queues.firstIndex(where: { $0.name == "statsq" })
        switch (saved.pool, position) {
        case (nil, nil): break
        case (let placement?, let p?):
            guard placement.bufferSize == GuestMemoryStats.wireSize, placement.length == GuestMemoryStats.wireSize else {
                throw PluginError("the record's stats buffer does not fit this plugin")
            }
            pool = try driver.restoredPool(placement, queue: p, "statsq")
        default: throw PluginError("the record and the device disagree about the stats queue")
        }
        updates = saved.updates
        readErrors = saved.readErrors
    }

    /// A buffer the device returned while the old process was quiescing is
    /// answered now; a free one (never offered) is offered.
    func continueAfterHandover(_ driver: DeviceDriver) throws {
        guard let p = position else { return }
        try interrupt(queue: p, driver)
        if pool?.freeCount == 1 { try offer(driver) }
    }
}
