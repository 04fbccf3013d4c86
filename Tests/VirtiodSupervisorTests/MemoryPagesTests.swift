import Glibc
import Testing
import VirtioSystem

/// A memfd's memory held and given back by ranges (the balloon endpoint's
/// pages), found again from the file alone, and its frame numbers.
@Suite struct MemoryPagesTests {
    let chunk = 256 * 4096

    @Test func allocateReleaseAndFindAgain() throws {
        let m = try SharedMemory(name: "pages-test", size: 8 * chunk)
        #expect(try m.allocatedRanges().isEmpty)
        try m.allocate(offset: 2 * chunk, length: chunk)
        try m.allocate(offset: 3 * chunk, length: chunk)
        try m.allocate(offset: 6 * chunk, length: chunk)
        #expect(try m.allocatedRanges() == [2 * chunk..<4 * chunk, 6 * chunk..<7 * chunk])
        // Another mapping of the same file (a restarted virtiod) sees the same.
        let again = try SharedMemory(mapping: m.fd, size: m.size, ownsFD: false)
        #expect(try again.allocatedRanges() == [2 * chunk..<4 * chunk, 6 * chunk..<7 * chunk])
        try m.release(offset: 3 * chunk, length: chunk)
        #expect(try m.allocatedRanges() == [2 * chunk..<3 * chunk, 6 * chunk..<7 * chunk])
        // Ranges outside the file are refused, not clamped.
        #expect(throws: SystemCallError.self) { try m.allocate(offset: 7 * chunk, length: 2 * chunk) }
        #expect(throws: SystemCallError.self) { try m.release(offset: -chunk, length: chunk) }
    }

    @Test func frameNumbersOfHeldPages() throws {
        let m = try SharedMemory(name: "pages-test", size: 2 * chunk)
        try m.allocate(offset: 0, length: chunk)
        if geteuid() == 0 {
            let frames = try PageMap.frames(of: m, 0..<chunk)
            #expect(frames.count == 256 && Set(frames).count == 256 && !frames.contains(0))
        } else {
            // Without CAP_SYS_ADMIN the kernel hides frame numbers: refused, never zeros passed on.
            #expect(throws: SystemCallError.self) { try PageMap.frames(of: m, 0..<chunk) }
        }
        // Not present (never touched) is refused too.
        #expect(throws: SystemCallError.self) { try PageMap.frames(of: m, chunk..<2 * chunk) }
        #expect(throws: SystemCallError.self) { try PageMap.frames(of: m, 100..<4196) }
    }
}

extension MemoryPagesTests {
    /// Unmapped here, the pages stay in the memfd (and keep their frames);
    /// mapped again for a look, they are the same pages.
    @Test func framesSurviveUnmapping() throws {
        guard geteuid() == 0 else {
            #expect(throws: SystemCallError.self) { try PageMap.frames(of: SharedMemory(name: "p", size: chunk), 0..<4096) }
            return
        }
        let m = try SharedMemory(name: "pages-test", size: chunk)
        try m.allocate(offset: 0, length: chunk)
        let before = try PageMap.frames(of: m, 0..<chunk)
        try m.unmapPages(offset: 0, length: chunk)
        #expect(throws: SystemCallError.self) { try PageMap.frames(of: m, 0..<chunk) }
        #expect(try m.allocatedRanges() == [0..<chunk])
        let again = try m.withPagesMapped(0..<chunk) { try PageMap.frames(of: m, 0..<chunk) }
        #expect(again == before)
        #expect(throws: SystemCallError.self) { try PageMap.frames(of: m, 0..<chunk) }
    }
}

/// A PSI trigger polls readable (POLLIN) all the time; its watch only when
/// an event came — else a plugin's event loop would spin on it.
@Suite struct PressureWatchTests {
    @Test func readableOnlyOnEvents() throws {
        let trigger = try PressureTrigger.memory(stallMS: 150, windowMS: 2000)
        defer { try? trigger.close() }
        let watch = try PressureWatch(trigger: trigger)
        defer { watch.close() }
        #expect(try Poll.wait([(trigger, true, false)], timeoutMS: 0).first?.readable == true)
        #expect(try Poll.wait([(watch.fd, true, false)], timeoutMS: 50).isEmpty)
        #expect(!watch.take())
    }
}
