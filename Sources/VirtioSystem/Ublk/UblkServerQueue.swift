import Glibc
import SystemPackage

/// One hardware queue of a ublk device served from this process
/// (Documentation/block/ublk.rst, "Data plane"): its descriptor area mapped
/// read-only from /dev/ublkcN, and a ring on which every tag waiting for a
/// request has a FETCH_REQ (first) or COMMIT_AND_FETCH_REQ (after an
/// answer) outstanding. A completion with `UblkABI.resultOK` means the
/// tag's descriptor holds a request; the kernel has already copied a
/// write's data into the tag's buffer and copies a read's out of it when
/// the answer is committed.
///
/// ublk takes a queue's commands from one thread only: the one that sent
/// its first FETCHes.
public final class UblkServerQueue {
    public let queue: Int
    public let depth: Int
    /// Signalled when completions arrive (for the poll loop).
    public let completions: EventFD
    private let ring: IOURing
    /// /dev/ublkcN (the caller's; it outlives the queue).
    private let server: FileDescriptor
    // SAFETY: `descriptors` is a read-only shared mapping of `mappedSize`
    // bytes made in init and unmapped in deinit; reads stay within
    // `depth` × 24 bytes (`descriptor` checks the tag).
    private let descriptors: UnsafeRawPointer
    private let mappedSize: Int
    private var queued = 0

    public init(server: FileDescriptor, queue: Int, depth: Int) throws {
        precondition(depth > 0 && depth <= UblkABI.maxQueueDepth)
        self.queue = queue
        self.depth = depth
        self.server = server
        mappedSize = UblkABI.descriptorAreaSize(depth: depth)
        let p = mmap(nil, mappedSize, PROT_READ, MAP_SHARED | MAP_POPULATE, server.rawValue,
                     off_t(UblkABI.descriptorAreaOffset(queue: queue)))
        guard let p, p != MAP_FAILED else { throw SystemCallError("mmap of the ublk queue \(queue) descriptors") }
        descriptors = UnsafeRawPointer(p)
        do {
            var entries: UInt32 = 1
            while entries < UInt32(depth) { entries *= 2 }
            ring = try IOURing(entries: entries)
            completions = try EventFD()
            try ring.register(completions)
        } catch {
            munmap(UnsafeMutableRawPointer(mutating: descriptors), mappedSize)
            throw error
        }
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: descriptors), mappedSize)
        completions.close()
    }

    /// Wait for a request on `tag`, whose data goes through `buffer` (an
    /// address in this process, room for the device's largest request).
    public func fetch(tag: Int, buffer: UInt64) throws {
        try queue(UblkABI.fetchRequest, UblkABI.IOCommand(queue: UInt16(queue), tag: UInt16(tag), result: 0, bufferAddress: buffer))
    }

    /// Answer `tag`'s request (bytes done, or a negative errno) and wait for the next.
    public func commit(tag: Int, result: Int32, buffer: UInt64) throws {
        try queue(UblkABI.commitAndFetchRequest,
                  UblkABI.IOCommand(queue: UInt16(queue), tag: UInt16(tag), result: result, bufferAddress: buffer))
    }

    private func queue(_ op: UInt32, _ command: UblkABI.IOCommand) throws {
        let payload = command.bytes
        for _ in 0..<2 {
            let ok = try payload.withUnsafeBytes { try ring.queueCommand(fd: server, op: op, payload: $0, userData: UInt64(command.tag)) }
            if ok {
                queued += 1
                return
            }
            try submit()
        }
        throw SystemCallError("io_uring: no submission entry free", .resourceTemporarilyUnavailable)
    }

    /// Hand the queued commands to the kernel.
    public func submit() throws {
        guard queued > 0 else { return }
        try ring.submit()
        queued = 0
    }

    /// The next finished command: its tag and result.
    public func nextCompletion() -> (tag: Int, result: Int32)? {
        guard let c = ring.reap() else { return nil }
        return (Int(truncatingIfNeeded: c.userData), c.result)
    }

    /// What the kernel asks of `tag` (valid after a `resultOK` completion).
    public func descriptor(_ tag: Int) -> UblkABI.IODescriptor {
        precondition(tag >= 0 && tag < depth)
        let bytes = Array(UnsafeRawBufferPointer(start: descriptors + tag * UblkABI.descriptorSize, count: UblkABI.descriptorSize))
        return UblkABI.IODescriptor(bytes)
    }
}
