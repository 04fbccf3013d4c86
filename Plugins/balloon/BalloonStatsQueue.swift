import FoundationEssentials
import Glibc
import VirtioCore
import VirtioSystem
import VirtiodPluginRuntime

/// The stats queue (virtio 1.2 §5.5.6.3): one buffer, filled with the
/// guest's figures and given to the device, which holds it until it wants
/// new ones (QEMU: at each `guest-stats-polling-interval`) and then returns
/// it used; each return is answered with fresh figures in the same buffer.
final class BalloonStatsQueue {
    let meminfo: String
    let vmstat: String
    /// Position of `statsq` in `driver.queues`.
    let position: Int
    var pool: DMABufferPool?
    var updates: UInt64 = 0
    var readErrors: UInt64 = 0

    init(position: Int, procRoot: String = "/proc") {
        self.position = position
        meminfo = procRoot + "/meminfo"
        vmstat = procRoot + "/vmstat"
    }

    func start(_ driver: DeviceDriver) throws {
        pool = try DMABufferPool(allocator: &driver.device.allocator, bufferSize: GuestMemoryStats.wireSize, count: 1)
        try offer(driver)
    }

    /// Fresh figures into the free buffer, and the buffer to the device.
    func offer(_ driver: DeviceDriver) throws {
        guard var pool, let slot = pool.take() else { return }
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
        let q = driver.queues[position]
        try q.queue.add([.readable(region.deviceAddress(s), entries.count * GuestMemoryStats.entrySize)], token: UInt64(slot))
        self.pool = pool
        updates &+= 1
        if q.queue.publish() { driver.transport.notify(q.index) }
    }

    /// The device gave the buffer back: it wants new figures.
    func interrupt(_ driver: DeviceDriver) throws {
        guard var pool else { return }
        var returned = false
        while let used = try driver.queues[position].queue.popUsed() {
            // The queue core checked the token is one of ours in flight.
            pool.give(Int(used.token))
            returned = true
        }
        self.pool = pool
        if returned { try offer(driver) }
    }

    var counters: [String: UInt64] { ["updates": updates, "read_errors": readErrors] }

    // MARK: hand-over: the buffer (with the device or free) and the counts.

    struct Saved: Codable {
        var pool: PoolPlacement?
        var updates: UInt64, readErrors: UInt64
    }

    var saved: Saved { Saved(pool: pool.map(PoolPlacement.init), updates: updates, readErrors: readErrors) }

    func resume(_ driver: DeviceDriver, _ saved: Saved) throws {
        if let placement = saved.pool {
            guard placement.bufferSize == GuestMemoryStats.wireSize, placement.length == GuestMemoryStats.wireSize else {
                throw PluginError("the record's stats buffer does not fit this plugin")
            }
            pool = try driver.restoredPool(placement, queue: position, "statsq")
        }
        updates = saved.updates
        readErrors = saved.readErrors
    }

    /// A buffer the device returned while the old process was quiescing is
    /// answered now; a free one (never offered) is offered.
    func continueAfterHandover(_ driver: DeviceDriver) throws {
        try interrupt(driver)
        if pool?.freeCount == 1 { try offer(driver) }
    }
}
