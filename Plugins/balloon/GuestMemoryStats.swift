import VirtioSystem

/// The guest's memory statistics as the balloon's stats queue carries them
/// (virtio 1.2 §5.5.6.3: an array of `struct virtio_balloon_stat { le16
/// tag; le64 val; }`, packed, 10 bytes each), read from /proc/meminfo and
/// /proc/vmstat with the mapping Linux's virtio_balloon uses.
struct GuestMemoryStats: Equatable {
    /// §5.5.6.3 tags.
    enum Tag: UInt16, CaseIterable {
        case swapIn = 0, swapOut = 1, majorFaults = 2, minorFaults = 3, memFree = 4, memTotal = 5, available = 6,
             caches = 7, hugetlbAllocations = 8, hugetlbFailures = 9
    }

    static let entrySize = 10
    static let wireSize = Tag.allCases.count * entrySize

    var values: [Tag: UInt64] = [:]

    /// `meminfo` is /proc/meminfo ("MemTotal:  1004928 kB"), `vmstat`
    /// /proc/vmstat ("pswpin 0"). Counts of pages become bytes with
    /// `pageSize`; what a kernel does not report is left out.
    static func read(meminfo: String, vmstat: String, pageSize: UInt64) -> GuestMemoryStats {
        let mem = MemInfo(meminfo)
        var vm: [Substring: UInt64] = [:]
        for line in vmstat.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let v = UInt64(parts[1]) else { continue }
            vm[parts[0]] = v
        }
        func pages(_ key: Substring) -> UInt64? { vm[key].map { $0.multipliedReportingOverflow(by: pageSize).partialValue } }
        var s = GuestMemoryStats()
        s.values[.swapIn] = pages("pswpin")
        s.values[.swapOut] = pages("pswpout")
        s.values[.majorFaults] = vm["pgmajfault"]
        s.values[.minorFaults] = vm["pgfault"]
        s.values[.memFree] = mem["MemFree"]
        s.values[.memTotal] = mem["MemTotal"]
        s.values[.available] = mem["MemAvailable"]
        s.values[.caches] = pages("nr_file_pages")
        s.values[.hugetlbAllocations] = vm["htlb_buddy_alloc_success"]
        s.values[.hugetlbFailures] = vm["htlb_buddy_alloc_fail"]
        return s
    }

    /// The entries in tag order, as the device reads them.
    var entries: [(tag: UInt16, value: UInt64)] {
        Tag.allCases.compactMap { t in values[t].map { (t.rawValue, $0) } }
    }
}
