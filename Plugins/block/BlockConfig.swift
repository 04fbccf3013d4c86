import VirtioCore
import VirtiodPluginRuntime

/// struct virtio_blk_config (virtio 1.2 §5.2.4), for reports.
enum BlockConfig {
    static func read(_ transport: any Transport, negotiated: UInt64) throws -> [String: ConfigValue] {
        var c = ConfigFields(transport, negotiated: negotiated)
        try c.number("capacity", UInt64.self, at: 0)
        if c.has(BlockFeatures.sizeMax.rawValue) { try c.number("size_max", UInt32.self, at: 8) }
        if c.has(BlockFeatures.segMax.rawValue) { try c.number("seg_max", UInt32.self, at: 12) }
        if c.has(BlockFeatures.geometry.rawValue) {
            try c.number("cylinders", UInt16.self, at: 16)
            try c.number("heads", UInt8.self, at: 18)
            try c.number("sectors", UInt8.self, at: 19)
        }
        if c.has(BlockFeatures.blockSize.rawValue) { try c.number("blk_size", UInt32.self, at: 20) }
        if c.has(BlockFeatures.topology.rawValue) {
            try c.number("physical_block_exp", UInt8.self, at: 24)
            try c.number("alignment_offset", UInt8.self, at: 25)
            try c.number("min_io_size", UInt16.self, at: 26)
            try c.number("opt_io_size", UInt32.self, at: 28)
        }
        if c.has(BlockFeatures.configWCE.rawValue) { try c.number("writeback", UInt8.self, at: 32) }
        if c.has(BlockFeatures.multiqueue.rawValue) { try c.number("num_queues", UInt16.self, at: 34) }
        if c.has(BlockFeatures.discard.rawValue) {
            try c.number("max_discard_sectors", UInt32.self, at: 36)
            try c.number("max_discard_seg", UInt32.self, at: 40)
            try c.number("discard_sector_alignment", UInt32.self, at: 44)
        }
        if c.has(BlockFeatures.writeZeroes.rawValue) {
            try c.number("max_write_zeroes_sectors", UInt32.self, at: 48)
            try c.number("max_write_zeroes_seg", UInt32.self, at: 52)
            try c.number("write_zeroes_may_unmap", UInt8.self, at: 56)
        }
        return c.values
    }

    /// VIRTIO_BLK_T_GET_ID (virtio 1.2 §5.2.6): the disk's serial, 20 bytes,
    /// asked once at bring-up on request queue 0. It is also the first real
    /// DMA through the IOMMU: the device reads the request from and writes
    /// the answer into the memfd at its IOVA, and completes with an interrupt.
    static func serial(_ driver: DeviceDriver) throws -> [String: ConfigValue] {
        // struct virtio_blk_req header: le32 type, le32 reserved, le64 sector.
        var header = [UInt8](repeating: 0, count: 16)
        header[0] = 8 // VIRTIO_BLK_T_GET_ID
        let reply = try driver.request(queue: 0, readable: header, writable: 20 + 1)
        guard reply.count == 21 else { throw PluginError("GET_ID returned \(reply.count) bytes, expected 21") }
        guard reply[20] == 0 else { throw PluginError("GET_ID status \(reply[20]) (unsupported or I/O error)") }
        return ["serial": .text(String(decoding: reply[0..<20].prefix { $0 != 0 }, as: UTF8.self))]
    }
}
