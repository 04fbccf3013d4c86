import VirtioCore
import VirtiodPluginRuntime

/// What the FUSE side needs of a 9P server: send a request, get its reply
/// (or error) later. `NinePSession` is the real one, over the virtqueue.
protocol NinePChannel: AnyObject {
    /// Largest message either way (negotiated with Tversion).
    var msize: UInt32 { get }
    /// Send `request` (for a write, `payload` is its data); `done` runs once
    /// with the reply's body or the error, from the event loop.
    /// Returns an id for `flush` while the request is at the server (nil
    /// if it waits for a slot).
    @discardableResult
    func send(_ request: NinePWire.Request, payload: NinePPayload, _ done: @escaping (Result<NinePWire.Reader, NinePError>) -> Void) -> Int?
    /// Ask the server to drop request `id` (FUSE INTERRUPT). Its callback
    /// still runs: with EINTR if the server dropped it, else with the reply.
    func flush(_ id: Int)
}

extension NinePChannel {
    @discardableResult
    func send(_ request: NinePWire.Request, _ done: @escaping (Result<NinePWire.Reader, NinePError>) -> Void) -> Int? {
        send(request, payload: .bytes([]), done)
    }
}

/// A Twrite's data: bytes to copy, or bytes the channel already holds
/// where the message needs them (`NinePSession.reserve`: /dev/fuse read
/// them straight into the slot).
enum NinePPayload {
    case bytes(ArraySlice<UInt8>)
    case placed(slot: Int, count: Int)

    var count: Int {
        switch self {
        case .bytes(let b): b.count
        case .placed(_, let count): count
        }
    }
}

/// The 9P client end of the virtqueue (the "requests" queue of a virtio 9P
/// transport, device ID 9): each request has a slot of DMA memory — its T
/// message in the first `msize` bytes (device-readable), room for the R
/// message in the next `msize` (device-writable) — and slot i's requests
/// carry tag i, so a reply's chain (its token) names its request and its tag
/// must agree. Requests go out in parallel, as many as there are slots;
/// more wait in order. Every length the device reports is checked against
/// the slot before anything is read.
final class NinePSession: NinePChannel {
    /// The msize this client asks for: 508 KiB of data in a read or write
    /// (127 pages), plus headers. Per-request costs (two process wake-ups,
    /// an interrupt, a kick) dominate under TCG, so fewer, larger requests
    /// win; the kernel's v9fs stays at 128 KiB (its virtio transport maps
    /// every page of a request as its own descriptor), a slot here is one
    /// contiguous piece of DMA memory. A slot (T and R half) is 1 MiB, so
    /// two fit each 2 MiB hugepage in no-IOMMU mode.
    static let preferredMsize: UInt32 = 512 * 1024
    /// Requests at the server at once: 8 × 508 KiB keeps 4 MiB moving.
    static let slots = 8

    struct Pending {
        var request: NinePWire.Request
        var done: (Result<NinePWire.Reader, NinePError>) -> Void
        /// Set once Tflush was sent for it.
        var flushed = false
    }

    let region: DMARegion
    let queue: Virtqueue
    let indirect: Bool
    let notify: () -> Void
    private(set) var pool: DMABufferPool
    /// The negotiated msize (the slot halves are `NinePSession.preferredMsize`).
    private(set) var msize: UInt32
    private var pending: [Int: Pending] = [:]
    private var waiting: [(NinePWire.Request, NinePPayload, (Result<NinePWire.Reader, NinePError>) -> Void)] = []
    private var added = false
    var counters = Counters()

    struct Counters: Codable, Equatable {
        var requests: UInt64 = 0, errors: UInt64 = 0, malformed: UInt64 = 0, flushes: UInt64 = 0, kicks: UInt64 = 0
        var readBytes: UInt64 = 0, writeBytes: UInt64 = 0
    }

    static var slotSize: Int { Int(preferredMsize) * 2 }

    init(region: DMARegion, queue: Virtqueue, pool: DMABufferPool, indirect: Bool, notify: @escaping () -> Void) {
        self.region = region
        self.queue = queue
        self.pool = pool
        self.indirect = indirect
        self.notify = notify
        msize = Self.preferredMsize
    }

    var inFlight: Int { pending.count }
    var idle: Bool { pending.isEmpty && waiting.isEmpty }

    /// After Tversion: the server's msize (never more than asked, never so small
    /// that a read header does not fit).
    func negotiated(msize m: UInt32) throws {
        guard m >= 4096, m <= Self.preferredMsize else { throw PluginError("the 9P server answered msize \(m) (asked \(Self.preferredMsize))") }
        msize = m
    }

    @discardableResult
    func send(_ request: NinePWire.Request, payload: NinePPayload, _ done: @escaping (Result<NinePWire.Reader, NinePError>) -> Void) -> Int? {
        if case .placed(let slot, _) = payload {
            // Its own slot: it need not wait behind others.
            guard slot == reserved else {
                done(.failure(.lost))
                return nil
            }
            reserved = nil
            return start(slot, request, payload, done) ? slot : nil
        }
        guard waiting.isEmpty, let slot = pool.take() else {
            waiting.append((request, payload, done))
            return nil
        }
        return start(slot, request, payload, done) ? slot : nil
    }

    // MARK: data read straight into a slot

    /// A slot taken before reading /dev/fuse; a WRITE read into it is sent
    /// from it (`.placed`), anything else gives it back (`unreserve`).
    private var reserved: Int?

    /// Where the next FUSE request's bytes past its head can go: a free
    /// slot's message half, past a Twrite header. nil: no slot is free.
    func reserve() -> (slot: Int, area: DMASlice)? {
        if reserved == nil {
            guard waiting.isEmpty, let slot = pool.take() else { return nil }
            reserved = slot
        }
        let s = pool.slice(reserved!)
        let header = NinePWire.writeHeaderSize
        return (reserved!, DMASlice(offset: s.offset + header, length: Int(Self.preferredMsize) - header))
    }

    /// The reserved slot was not sent from: free again.
    func unreserve() {
        if let slot = reserved { pool.give(slot) }
        reserved = nil
    }

    /// The first `count` bytes of the reserved area (a request other than WRITE that was longer than its head).
    func reservedBytes(_ count: Int) -> [UInt8] {
        guard let (_, area) = reserve(), count <= area.length else { return [] }
        return region.bytes(area, count: count)
    }

    @discardableResult
    private func start(_ slot: Int, _ request: NinePWire.Request, _ payload: NinePPayload,
                       _ done: @escaping (Result<NinePWire.Reader, NinePError>) -> Void) -> Bool {
        let s = pool.slice(slot)
        let message = request.encode(tag: UInt16(slot))
        let half = Int(Self.preferredMsize)
        let data = DMASlice(offset: s.offset + message.count, length: payload.count)
        guard message.count + payload.count <= Int(msize) else {
            pool.give(slot)
            done(.failure(.server(7))) // E2BIG: the caller sized it wrong
            return false
        }
        switch payload {
        case .bytes(let b):
            // The message, then a write's data right after it: copied once, from where FUSE put it.
            region.copy(message, into: DMASlice(offset: s.offset, length: message.count))
            region.copy(b, into: data)
        case .placed(let placedSlot, _):
            // The data is in this slot already, right after where the Twrite header goes.
            precondition(placedSlot == slot && message.count == NinePWire.writeHeaderSize, "placed data for \(request.replyType) in slot \(slot)")
            region.copy(message, into: DMASlice(offset: s.offset, length: message.count))
        }
        let at = region.deviceAddress(s)
        let chain: [BufferSegment] = [.readable(at, message.count + payload.count), .writable(at + UInt64(half), Int(msize))]
        guard queue.freeDescriptors >= (indirect ? 1 : 2) else {
            // It waits for another slot: placed data comes along as bytes.
            let kept: NinePPayload = if case .placed = payload { .bytes(region.bytes(data, count: data.length)[...]) } else { payload }
            pool.give(slot)
            waiting.insert((request, kept, done), at: 0)
            return false
        }
        do { try queue.add(chain, token: UInt64(slot), indirect: indirect) } catch {
            pool.give(slot)
            done(.failure(.lost))
            return false
        }
        pending[slot] = Pending(request: request, done: done)
        counters.requests &+= 1
        if case .write(_, _, let count) = request { counters.writeBytes &+= UInt64(count) }
        added = true
        return true
    }

    /// The request behind `id` (a slot) is no longer wanted: Tflush it.
    /// Its reply (or Rflush first) still comes back.
    func flush(_ id: Int) {
        guard var p = pending[id], !p.flushed else { return }
        p.flushed = true
        pending[id] = p
        counters.flushes &+= 1
        send(.flush(oldTag: UInt16(id))) { _ in }
    }

    /// Make what was added visible and kick the device if it asks.
    func publish() {
        guard added else { return }
        added = false
        if queue.publish() {
            counters.kicks &+= 1
            notify()
        }
    }

    /// Take the replies the device returned and run their callbacks; then
    /// send what waited for a slot.
    func collect(_ address: String) throws {
        while let used = try queue.popUsed() {
            let slot = Int(used.token)
            guard slot < pool.count, let p = pending.removeValue(forKey: slot) else {
                PluginLog.warning("9p \(address): a reply came back in slot \(used.token), which has no request; ignored")
                continue
            }
            // The slot is free again once the callback has run: a read's data
            // is written to /dev/fuse from it.
            defer { pool.give(slot) }
            let s = pool.slice(slot)
            let half = Int(Self.preferredMsize)
            let written = min(Int(used.length), Int(msize))
            // Of an Rread only the header and count are copied; its data stays in the slot.
            let isRead = if case .read = p.request { true } else { false }
            let copied = isRead ? min(written, NinePWire.readHeaderSize) : written
            let bytes = region.bytes(DMASlice(offset: s.offset + half, length: copied), count: copied)
            let result: Result<NinePWire.Reader, NinePError>
            // A request the server dropped after Tflush comes back empty.
            if p.flushed, written < NinePWire.headerSize {
                p.done(.failure(.server(4))) // EINTR
                continue
            }
            do {
                let h = try NinePWire.header(bytes, written: written)
                // Tversion goes out with NOTAG, and its reply comes back with it.
                let tag = if case .version = p.request { NinePWire.noTag } else { UInt16(slot) }
                guard h.tag == tag else { throw NinePError.malformed("tag \(h.tag) in slot \(slot)") }
                var r = try NinePWire.body(bytes, written: written, expecting: p.request.replyType)
                if h.size > copied { r.tail = DMASlice(offset: s.offset + half + copied, length: h.size - copied) }
                result = .success(r)
            } catch let e as NinePError {
                if case .malformed(let why) = e {
                    counters.malformed &+= 1
                    PluginLog.warning("9p \(address): the reply to \(p.request.replyType) in slot \(slot): \(why); answered as EIO")
                }
                result = .failure(e)
            }
            if case .failure = result { counters.errors &+= 1 }
            if case .success(var r) = result, isRead, let n = try? r.u32() { counters.readBytes &+= UInt64(n) }
            p.done(result)
        }
        while !waiting.isEmpty, let slot = pool.take() {
            let (request, payload, done) = waiting.removeFirst()
            if !start(slot, request, payload, done), queue.freeDescriptors < (indirect ? 1 : 2) { break }
        }
    }

    /// After a reset of the device: every request is lost.
    func failAll() {
        unreserve()
        let all = pending.values.map(\.done) + waiting.map { $0.2 }
        pending = [:]
        waiting = []
        for done in all { done(.failure(.lost)) }
    }
}
