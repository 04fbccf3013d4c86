import VirtioCore

/// One device request held in a slot (virtio 1.2 §5.2.6): the header, the
/// data in the slot's data area (or a discard / write-zeroes segment) and
/// the status byte, added to a request queue as one chain (one descriptor
/// with VIRTIO_F_INDIRECT_DESC). The NBD and ublk queues both send theirs
/// through here.
enum BlockDeviceIO {
    /// Add a request of `type` for `length` bytes at `sector` held in
    /// `slot`, tagged `token`; false if the ring has no room for it.
    static func add(_ type: BlockRequestType, sector: UInt64, length: Int, slot: DMASlice, token: UInt64,
                    _ ctx: any BlockContext, to queue: Virtqueue) -> Bool {
        let region = ctx.region
        let at = region.deviceAddress(slot)
        var chain: [BufferSegment] = [.readable(at + UInt64(BlockSlot.header(slot)), 16)]
        switch type {
        case .read, .write:
            var offset = 0
            for segment in ctx.limits.segments(length) {
                chain.append(type == .read ? .writable(at + UInt64(offset), segment) : .readable(at + UInt64(offset), segment))
                offset += segment
            }
        case .discard, .writeZeroes:
            region.storeLE64(sector, slot, at: BlockSlot.segment(slot))
            region.storeLE32(UInt32(length / 512), slot, at: BlockSlot.segment(slot) + 8)
            region.storeLE32(0, slot, at: BlockSlot.segment(slot) + 12) // no unmap for zeroing
            chain.append(.readable(at + UInt64(BlockSlot.segment(slot)), 16))
        case .flush, .getID:
            break
        }
        chain.append(.writable(at + UInt64(BlockSlot.status(slot)), 1))
        guard queue.freeDescriptors >= (ctx.indirect ? 1 : chain.count) else { return false }
        region.storeLE32(type.rawValue, slot, at: BlockSlot.header(slot))
        region.storeLE32(0, slot, at: BlockSlot.header(slot) + 4)
        region.storeLE64(type == .flush ? 0 : sector, slot, at: BlockSlot.header(slot) + 8)
        // The status byte is the device's to write: an unwritten one reads as an error.
        region.copy([0xff], into: DMASlice(offset: slot.offset + BlockSlot.status(slot), length: 1))
        do { try queue.add(chain, token: token, indirect: ctx.indirect) } catch { return false }
        return true
    }

    /// Make what was added to queue `position` visible; kick the device if
    /// it asks for it (true then).
    static func publish(_ ctx: any BlockContext, _ position: Int) -> Bool {
        guard ctx.queue(position).publish() else { return false }
        ctx.notify(position)
        return true
    }

    /// The status of a request the device returned (device-written, so
    /// checked): a value beyond UNSUPP, or a read the device says it filled
    /// less than `length` bytes of, is an I/O error.
    static func status(_ type: BlockRequestType, length: Int, slot: DMASlice, usedLength: UInt32, _ ctx: any BlockContext) -> UInt8 {
        var status = ctx.region.load8(slot, at: BlockSlot.status(slot))
        if status > BlockStatus.unsupported { status = BlockStatus.ioError }
        if type == .read, status == BlockStatus.ok, Int(usedLength) < length + 1 { status = BlockStatus.ioError }
        return status
    }
}
