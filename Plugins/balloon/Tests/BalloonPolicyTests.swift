import Testing
@testable import virtiod_balloon
import VirtiodPluginRuntime

/// Following the host's target in chunks of 256 pages, stopping short of
/// what the guest cannot spare, deflating under pressure (virtio 1.2 §5.5.6).
@Suite struct BalloonPolicyTests {
    let gib: UInt64 = 1 << 30, mib: UInt64 = 1 << 20

    @Test func followsTheTargetBothWays() {
        var p = BalloonPolicy(chunkPages: 256)
        // 256 MiB = 65536 pages = 256 chunks.
        let r1 = p.next(targetPages: 65536, held: 0, available: 800 * mib, total: gib, now: 0)
        #expect(r1 == .inflate)
        let r2 = p.next(targetPages: 65536, held: 255, available: 600 * mib, total: gib, now: 0)
        #expect(r2 == .inflate)
        let r3 = p.next(targetPages: 65536, held: 256, available: 544 * mib, total: gib, now: 0)
        #expect(r3 == .hold(nil))
        let r4 = p.next(targetPages: 0, held: 256, available: 544 * mib, total: gib, now: 0)
        #expect(r4 == .deflate)
        let r5 = p.next(targetPages: 0, held: 0, available: 800 * mib, total: gib, now: 0)
        #expect(r5 == .hold(nil))
        // A target that is not whole chunks is followed down to whole chunks: actual never exceeds it.
        let r6 = p.next(targetPages: 300, held: 1, available: 800 * mib, total: gib, now: 0)
        #expect(r6 == .hold(nil))
    }

    @Test func stopsShortOfWhatTheGuestCannotSpare() {
        var p = BalloonPolicy(chunkPages: 256)
        #expect(BalloonPolicy.reserve(total: gib) == 64 * mib)
        #expect(BalloonPolicy.reserve(total: 4 * gib) == 256 * mib)
        // 64 MiB kept + the next chunk.
        let r7 = p.next(targetPages: 65536, held: 10, available: 65 * mib, total: gib, now: 0)
        #expect(r7 == .inflate)
        guard case .hold(let why?) = Optional(p.next(targetPages: 65536, held: 10, available: 64 * mib, total: gib, now: 0)) else {
            Issue.record("inflated into the reserve")
            return
        }
        #expect(why.contains("64 MiB available") && why.contains("64 MiB kept"))
    }

    @Test func pressureDeflatesAndHoldsOff() {
        var p = BalloonPolicy(chunkPages: 256)
        // 40 MiB available of 1 GiB: 2×64 − 40 = 88 MiB short → 88 chunks back.
        let r8 = p.pressure(held: 200, available: 40 * mib, total: gib, now: 100)
        #expect(r8)
        #expect(p.ceiling == 112)
        let r9 = p.next(targetPages: 65536, held: 200, available: 40 * mib, total: gib, now: 101)
        #expect(r9 == .deflate)
        let r10 = p.next(targetPages: 65536, held: 113, available: 120 * mib, total: gib, now: 102)
        #expect(r10 == .deflate)
        guard case .hold(let why?) = Optional(p.next(targetPages: 65536, held: 112, available: 130 * mib, total: gib, now: 103)) else {
            Issue.record("inflated again right after a pressure deflate")
            return
        }
        #expect(why.contains("27 s"))
        // Hold-off over: back towards the target.
        let r11 = p.next(targetPages: 65536, held: 112, available: 130 * mib, total: gib, now: 130.5)
        #expect(r11 == .inflate)
        #expect(p.ceiling == nil)
        // Mild pressure still gives back at least a step; nothing held, nothing to do.
        let r12 = p.pressure(held: 100, available: 500 * mib, total: gib, now: 200)
        #expect(r12)
        #expect(p.ceiling == 100 - 16)
        var q = BalloonPolicy(chunkPages: 256)
        let r13 = q.pressure(held: 0, available: 10 * mib, total: gib, now: 0)
        #expect(!r13)
        #expect(q.ceiling == nil)
    }

    /// 4 MiB chunks (the supervisor's size): targets and steps in those.
    @Test func largerChunks() {
        var p = BalloonPolicy(chunkPages: 1024)
        #expect(p.pressureStep == 4 && p.chunkBytes == 4 * mib)
        let r1 = p.next(targetPages: 65536, held: 63, available: 800 * mib, total: gib, now: 0)
        #expect(r1 == .inflate)
        let r2 = p.next(targetPages: 65536, held: 64, available: 544 * mib, total: gib, now: 0)
        #expect(r2 == .hold(nil))
        // 3 MiB short of a chunk: not inflated (actual never above the target).
        let r3 = p.next(targetPages: 1023, held: 0, available: 800 * mib, total: gib, now: 0)
        #expect(r3 == .hold(nil))
        let r4 = p.pressure(held: 64, available: 100 * mib, total: gib, now: 0)
        #expect(r4 && p.ceiling == 64 - 7)
    }

    @Test func holdOffComesFromTheDeviceOptionOrIsRefusedByName() throws {
        #expect(try BalloonPolicy.holdOff(options: [:]) == BalloonPolicy.defaultHoldOff)
        #expect(try BalloonPolicy.holdOff(options: ["pressure_hold_off_sec": "5"]) == 5)
        for bad in ["0", "-3", "abc", "nan", "1e9", ""] {
            #expect(throws: PluginError.self) { try BalloonPolicy.holdOff(options: ["pressure_hold_off_sec": bad]) }
        }
        // The ceiling holds for the hold-off given, then inflating resumes.
        var p = BalloonPolicy(chunkPages: 256)
        let pressed = p.pressure(held: 64, available: 100 * mib, total: gib, now: 10, holdOff: 5)
        #expect(pressed)
        let held = p.ceiling ?? -1
        let during = p.next(targetPages: 65536, held: held, available: 600 * mib, total: gib, now: 14.9)
        #expect(during != .inflate)
        let after = p.next(targetPages: 65536, held: held, available: 600 * mib, total: gib, now: 15)
        #expect(after == .inflate)
    }

    @Test func lowMemoryIsBelowTheReserve() {
        #expect(BalloonPolicy.lowMemory(available: 63 * mib, total: gib))
        #expect(!BalloonPolicy.lowMemory(available: 64 * mib, total: gib))
    }
}
