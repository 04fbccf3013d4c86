import Testing
@testable import virtiod_balloon

/// The stats queue's figures from /proc text, with Linux's mapping (virtio 1.2 §5.5.6.3).
@Suite struct GuestMemoryStatsTests {
    let meminfo = """
        MemTotal:        1004928 kB
        MemFree:          612340 kB
        MemAvailable:     801232 kB
        Buffers:            9876 kB
        HugePages_Total:       0
        """
    let vmstat = "nr_free_pages 153085\nnr_file_pages 50000\npswpin 3\npswpout 7\npgfault 123456\npgmajfault 42\nhtlb_buddy_alloc_success 5\nhtlb_buddy_alloc_fail 1\n"

    @Test func linuxMapping() {
        let s = GuestMemoryStats.read(meminfo: meminfo, vmstat: vmstat, pageSize: 4096)
        #expect(s.values[.memTotal] == 1_004_928 * 1024 && s.values[.memFree] == 612_340 * 1024 && s.values[.available] == 801_232 * 1024)
        #expect(s.values[.swapIn] == 3 * 4096 && s.values[.swapOut] == 7 * 4096 && s.values[.caches] == 50_000 * 4096)
        #expect(s.values[.majorFaults] == 42 && s.values[.minorFaults] == 123_456)
        #expect(s.values[.hugetlbAllocations] == 5 && s.values[.hugetlbFailures] == 1)
        // In tag order, every tag once.
        #expect(s.entries.map(\.tag) == Array(0...9))
    }

    @Test func whatTheKernelDoesNotSayIsLeftOut() {
        let s = GuestMemoryStats.read(meminfo: "MemTotal: 100 kB\nMemFree: garbage kB\n: 5\n", vmstat: "pgfault\npswpin 1 2\n", pageSize: 4096)
        #expect(s.entries.map(\.tag) == [GuestMemoryStats.Tag.memTotal.rawValue])
        #expect(s.entries.first?.value == 102_400)
        #expect(GuestMemoryStats.read(meminfo: "", vmstat: "", pageSize: 4096).entries.isEmpty)
        #expect(GuestMemoryStats.wireSize == 100)
    }
}
