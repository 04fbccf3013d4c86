import Glibc
import VirtioCore
import VirtioSystem

extension DeviceDriver {
    /// Send one chain (readable bytes, then `writable` device-writable bytes)
    /// on the queue at position `index` of `queues` and wait up to 5 s for
    /// it; returns what the device wrote, bounded by the used length the
    /// queue core already checked. One request at a time, in a scratch page
    /// of DMA memory allocated once (and handed over with the device): for
    /// bring-up and control commands.
    public func request(queue index: Int, readable: [UInt8], writable: Int) throws -> [UInt8] {
        guard index < queues.count else { throw PluginError("queue \(index) is not set up") }
        guard readable.count <= Self.scratchSize / 2, writable <= Self.scratchSize / 2 else {
            throw PluginError("request of \(readable.count)+\(writable) bytes is larger than the scratch page")
        }
        let q = queues[index]
        // Late answers to requests that timed out are dropped first.
        while let stale = try q.queue.popUsed() {
            PluginLog.notice("\(profile.name) \(device.info.address): a late answer to request \(stale.token) dropped")
        }
        // A request that timed out may still be written by the device: its
        // page is left to it, and this one gets a fresh page.
        if q.queue.inFlight > 0 { scratch = nil }
        let page = try scratchPage()
        let input = DMASlice(offset: page.offset, length: readable.count)
        let output = DMASlice(offset: page.offset + Self.scratchSize / 2, length: writable)
        let region = device.region
        region.copy(readable, into: input)
        requestSerial &+= 1
        let token = requestSerial
        try q.queue.add([.readable(region.deviceAddress(input), readable.count),
                         .writable(region.deviceAddress(output), writable)], token: token)
        if q.queue.publish() { transport.notify(q.index) }
        let vector = q.vector == noMSIXVector ? nil : device.vectors[Int(q.vector)]
        for _ in 0..<500 {
            while let used = try q.queue.popUsed() {
                // The queue core checked used.length against the writable bytes.
                if used.token == token { return region.bytes(output, count: Int(used.length)) }
            }
            if let vector {
                if try !Poll.readable([vector.fd], timeoutMS: 10).isEmpty {
                    interrupts[Int(q.vector)] &+= (try? vector.consume()) ?? 0
                }
            } else {
                usleep(10_000)
            }
        }
        throw PluginError("no answer from the device within 5 s (request \(token) left to the device)")
    }

    static let scratchSize = 4096

    func scratchPage() throws -> DMASlice {
        if let scratch { return scratch }
        let page = try device.allocator.allocate(Self.scratchSize, alignment: 4096)
        scratch = page
        return page
    }
}
