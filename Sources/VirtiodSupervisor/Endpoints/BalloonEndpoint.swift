import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// Endpoint `balloon`: memory the supervisor holds for a balloon plugin
/// (virtio 1.2 §5.5), and a memory-pressure trigger.
///
/// A balloon hands the host pages the guest promises not to touch, named by
/// guest-physical frame number. A plugin can neither read frame numbers
/// (/proc/PID/pagemap shows them only to CAP_SYS_ADMIN) nor keep the kernel
/// from migrating its pages to other frames (mlock does not; a long-term pin
/// does). So the supervisor holds the pages: a sparse memfd, one chunk of
/// `chunkSize` allocated per `open` (key = chunk number), pinned by mapping it
/// into the device's VFIO container (at `iovaBase` + offset; the device is
/// never told these addresses), its frame numbers read from its own pagemap
/// and sent in the answer (`facts["frames"]`, hex). `close` unpins the chunk
/// and punches it out of the memfd: the memory is the guest's again.
///
/// The memfd is the endpoint's state (`stateFD`): which chunks are held is
/// what it has allocated, so a restart of virtiod finds them again; their
/// pins live in the container, which outlives the restart too. A plugin
/// starting on a reset device (after a crash) starts with none held: the
/// reset told the host every page is the guest's again.
///
/// fds: the PSI trigger on /proc/pressure/memory (POLLPRI when tasks stall
/// on memory; making one takes CAP_SYS_RESOURCE on 6.1), when the kernel has PSI.
final class BalloonEndpoint: Endpoint {
    static let kind = "balloon"
    /// 1024 pages (4 MiB): what one inflate/deflate buffer carries. Linux's
    /// driver sends 256 a time; a chunk costs a round trip to the supervisor
    /// and one to the device, and under emulation 1 MiB chunks moved only
    /// ~20 MiB/s — 4 MiB chunks make the steps (and the granularity) 4 MiB.
    static let chunkSize = 1024 * PageMap.pageSize
    /// Far above the DMA area (ClaimedDevice.iovaBase) and below 2^39 (QEMU's intel-iommu default width).
    static let iovaBase: UInt64 = 0x10_0000_0000
    static let pressureStallMS = 100, pressureWindowMS = 1000

    let address: String
    let memory: SharedMemory
    let container: VFIOContainer
    let pressure: FileDescriptor?
    let pressureProblem: String?
    private(set) var held: Set<Int>
    /// How long the last chunk took to allocate, pin and look up (for status).
    private var lastChunk = ""

    private init(address: String, memory: SharedMemory, container: VFIOContainer, pressure: FileDescriptor?,
                 pressureProblem: String?, held: Set<Int>) {
        self.address = address
        self.memory = memory
        self.container = container
        self.pressure = pressure
        self.pressureProblem = pressureProblem
        self.held = held
    }

    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64) -> Int { 1 }

    /// Room for all of the guest's memory (sparse: nothing is allocated until asked).
    static func create(for device: ClaimedDevice, rule: DeviceRule?) throws -> BalloonEndpoint {
        guard let container = device.container, !device.noIOMMU else { throw ClaimError.refused(unavailableWithoutIOMMU!) }
        guard let total = MemInfo.read()?["MemTotal"], total > 0 else { throw ClaimError.setup("balloon: no MemTotal in /proc/meminfo") }
        let size = (Int(total) + chunkSize - 1) / chunkSize * chunkSize
        let memory = try SharedMemory(name: "virtiod-balloon", size: size)
        var problem: String? = nil, trigger: FileDescriptor? = nil
        do { trigger = try PressureTrigger.memory(stallMS: pressureStallMS, windowMS: pressureWindowMS) } catch {
            problem = "\(error)"
            Log.warning("balloon: no memory-pressure trigger (deflate on pressure only by the low-memory check): \(error)",
                        device: device.address)
        }
        return BalloonEndpoint(address: device.address, memory: memory, container: container,
                               pressure: trigger, pressureProblem: problem, held: [])
    }

    static func restore(for device: ClaimedDevice, fds: [FileDescriptor], state: FileDescriptor?) throws -> BalloonEndpoint {
        guard let state else { throw ClaimError.setup("no balloon memory in the fd store") }
        guard let container = device.container, !device.noIOMMU else { throw ClaimError.setup(unavailableWithoutIOMMU!) }
        guard fds.count <= 1 else { throw ClaimError.setup("expected at most one \(kind) fd in the fd store, found \(fds.count)") }
        var st = stat()
        guard fstat(state.rawValue, &st) == 0, st.st_size > 0, Int(st.st_size) % chunkSize == 0 else {
            throw ClaimError.setup("the stored balloon memory is not whole chunks")
        }
        let memory = try SharedMemory(mapping: state, size: Int(st.st_size), ownsFD: true)
        var held: Set<Int> = []
        for r in try memory.allocatedRanges() {
            // A chunk is allocated whole or not at all (allocate/release work on whole chunks).
            held.formUnion(r.lowerBound / chunkSize..<(r.upperBound + chunkSize - 1) / chunkSize)
        }
        return BalloonEndpoint(address: device.address, memory: memory, container: container,
                               pressure: fds.first, pressureProblem: fds.isEmpty ? "not made at claim time" : nil, held: held)
    }

    static var storeWithPolling: Bool { false }

    /// The pages given to the host are pinned through the device's VFIO
    /// container; a no-IOMMU container pins nothing, and a page the kernel
    /// moved after its frame number was told would be another page when the
    /// host discards it.
    static var unavailableWithoutIOMMU: String? {
        "a balloon needs its pages pinned, which only an IOMMU container does (in no-IOMMU mode a page the kernel "
            + "moved after its frame number was told would be discarded by the host as someone else's)"
    }
    var fds: [FileDescriptor] { pressure.map { [$0] } ?? [] }
    var stateFD: FileDescriptor? { memory.fd }
    var chunks: Int { memory.size / Self.chunkSize }
    var facts: [String: String] {
        var f = ["chunk_pages": String(Self.chunkSize / PageMap.pageSize), "chunks": String(chunks),
                 "held": held.sorted().map(String.init).joined(separator: " ")]
        f["pressure"] = pressure == nil ? "none: \(pressureProblem ?? "?")" : "fd"
        return f
    }
    var summary: String { "\(held.count * Self.chunkSize >> 20) MiB held" }
    var details: [String: String] {
        ["held": "\(held.count * Self.chunkSize >> 20) MiB (\(held.count) chunks of \(Self.chunkSize >> 10) KiB, pinned)",
         "last chunk": lastChunk,
         "pressure trigger": pressure == nil ? "none (\(pressureProblem ?? "?"))"
             : "some \(Self.pressureStallMS) ms in \(Self.pressureWindowMS) ms"]
    }

    func request(_ event: EndpointEvent, _ device: ClaimedDevice) -> (answer: EndpointEvent?, fd: FileDescriptor?) {
        let k = event.key
        func failed(_ why: String) -> (EndpointEvent?, FileDescriptor?) {
            (EndpointEvent(kind: Self.kind, action: .failed, key: k, facts: ["error": why]), nil)
        }
        guard (0..<chunks).contains(k) else { return failed("chunk \(k) is outside 0..<\(chunks)") }
        switch event.action {
        case .open:
            let new = !held.contains(k)
            do {
                let t0 = monotonic()
                let pinned = new ? try hold(k) : nil
                let t1 = monotonic()
                // Read while the pages are mapped here (an `open` of a held chunk after a hand-over maps them again).
                let frames = try memory.withPagesMapped(range(k)) { try PageMap.frames(of: memory, range(k)) }
                lastChunk = "chunk \(k): " + (pinned.map { "allocated in \(milliseconds($0 - t0)), pinned in \(milliseconds(t1 - $0)), " } ?? "")
                    + "frames read in \(milliseconds(monotonic() - t1))"
                return (EndpointEvent(kind: Self.kind, action: .opened, key: k,
                                      facts: ["frames": frames.map { String($0, radix: 16) }.joined(separator: " ")]), nil)
            } catch {
                // A chunk held before (the host was told of it) stays held until the plugin closes it.
                if new, held.contains(k) { give(k) }
                return failed("\(error)")
            }
        case .close:
            if held.contains(k) { give(k) }
            return (nil, nil)
        default:
            return failed("unexpected \(event.action) from the plugin")
        }
    }

    private func range(_ k: Int) -> Range<Int> { k * Self.chunkSize..<(k + 1) * Self.chunkSize }
    private func iova(_ k: Int) -> UInt64 { Self.iovaBase + UInt64(k * Self.chunkSize) }

    /// Allocate chunk `k` and pin it (VFIO_IOMMU_MAP_DMA takes a long-term
    /// pin); returns when the allocation was done (monotonic seconds).
    private func hold(_ k: Int) throws -> Double {
        try memory.allocate(offset: k * Self.chunkSize, length: Self.chunkSize)
        let allocated = monotonic()
        do {
            try container.mapDMA(vaddr: memory.base + k * Self.chunkSize, iova: iova(k), size: Self.chunkSize)
        } catch {
            try? memory.release(offset: k * Self.chunkSize, length: Self.chunkSize)
            throw error
        }
        held.insert(k)
        return allocated
    }

    /// Unpin chunk `k` and give its memory back.
    private func give(_ k: Int) {
        do { try container.unmapDMA(iova: iova(k), size: Self.chunkSize) } catch {
            Log.warning("balloon: unpinning chunk \(k): \(error)", device: address)
        }
        do { try memory.release(offset: k * Self.chunkSize, length: Self.chunkSize) } catch {
            Log.warning("balloon: giving back chunk \(k): \(error)", device: address)
        }
        held.remove(k)
    }

    /// Every page back to the guest.
    private func giveAll() {
        let n = held.count
        for k in held.sorted() { give(k) }
        if n > 0 { Log.info("balloon: \(n * Self.chunkSize >> 20) MiB given back to the system", device: address) }
    }

    /// After a reset the host counts no page as the balloon's: none is held.
    func beforeFreshPlugin(_ device: ClaimedDevice) throws -> Bool {
        giveAll()
        return false
    }

    func close() {
        giveAll()
        try? pressure?.close()
    }
}
