import VirtiodPluginRuntime

/// How far to follow the host's target (virtio 1.2 §5.5.6: `num_pages`),
/// in chunks of `chunkPages` pages the supervisor holds: the decisions alone, without
/// queues or clocks, so they can be tested.
///
/// - Inflate one chunk at a time while below the target, only while the
///   guest keeps `reserve` available afterwards (the host may ask for more
///   than the guest can spare: the balloon stops short and says why).
/// - Deflate when above the target, or — with DEFLATE_ON_OOM — when the
///   guest is under memory pressure (PSI trigger, or available memory below
///   the reserve): down to a ceiling that frees enough for twice the
///   reserve, at least 16 MiB; no inflating again for the hold-off
///   (`defaultHoldOff`, or the device's `Option=pressure_hold_off_sec=`).
struct BalloonPolicy: Equatable, Codable {
    /// Pages per chunk (the supervisor's endpoint says how many).
    let chunkPages: Int
    var chunkBytes: UInt64 { UInt64(chunkPages) * 4096 }
    /// What a pressure event gives back at least: 16 MiB, in chunks.
    var pressureStep: Int { max(1, Int((16 << 20) / chunkBytes)) }
    /// Seconds without inflating after a pressure deflate, unless the
    /// device rule says otherwise.
    static let defaultHoldOff: Double = 30
    /// What `Option=pressure_hold_off_sec=` may say.
    static let holdOffRange: ClosedRange<Double> = 1...3600

    /// The hold-off from the device's options; a value that is not seconds
    /// in `holdOffRange` is refused with the option's name.
    static func holdOff(options: [String: String]) throws -> Double {
        guard let text = options["pressure_hold_off_sec"] else { return defaultHoldOff }
        guard let v = Double(text), v.isFinite, holdOffRange.contains(v) else {
            throw PluginError("Option=pressure_hold_off_sec= needs seconds from 1 to 3600, got '\(text.prefix(40))'")
        }
        return v
    }

    /// The ceiling a pressure deflate set, and until when it holds (CLOCK_MONOTONIC seconds).
    var ceiling: Int?
    var ceilingUntil: Double = 0

    init(chunkPages: Int) { self.chunkPages = max(1, chunkPages) }

    /// What the guest keeps available: 1/16 of its memory, at least 64 MiB.
    static func reserve(total: UInt64) -> UInt64 { max(64 << 20, total / 16) }

    enum Step: Equatable {
        case inflate
        case deflate
        /// Nothing to do; the text says why the target is not met (nil: it is).
        case hold(String?)
    }

    /// The next step towards `targetPages` with `held` chunks, the guest having `available` of `total` bytes.
    mutating func next(targetPages: UInt32, held: Int, available: UInt64, total: UInt64, now: Double) -> Step {
        if ceiling != nil, now >= ceilingUntil { ceiling = nil }
        let target = Int(targetPages) / chunkPages
        let limit = min(target, ceiling ?? Int.max)
        if held > limit { return .deflate }
        if held == target { return .hold(nil) }
        if held == limit {
            return .hold("deflated under memory pressure; inflating again in \(Int((ceilingUntil - now).rounded(.up))) s")
        }
        let reserve = Self.reserve(total: total)
        if available < reserve + chunkBytes {
            return .hold("the guest cannot spare more: \(available >> 20) MiB available, \(reserve >> 20) MiB kept")
        }
        return .inflate
    }

    /// Memory pressure with `held` chunks: whether to deflate (sets the ceiling).
    mutating func pressure(held: Int, available: UInt64, total: UInt64, now: Double, holdOff: Double = defaultHoldOff) -> Bool {
        guard held > 0 else { return false }
        let want = Self.reserve(total: total) * 2
        let short = want > available ? Int((want - available + chunkBytes - 1) / chunkBytes) : 0
        ceiling = max(0, min(ceiling ?? held, held - max(pressureStep, short)))
        ceilingUntil = now + holdOff
        return true
    }

    /// Available memory below the reserve counts as pressure even without a
    /// PSI event (inflating stops a chunk above it, so this is the guest's
    /// own use growing).
    static func lowMemory(available: UInt64, total: UInt64) -> Bool { available < reserve(total: total) }
}
