import CVirtioShim
import Glibc
import SystemPackage

/// DMA memory for vfio's no-IOMMU mode, where the device reaches guest-
/// physical addresses: a memfd of hugepages (MFD_HUGETLB). Hugepages are
/// reserved up front, never swapped and not moved by compaction, so an
/// address read once stays right while the file holds the page (the same
/// memory DPDK uses there; Documentation/admin-guide/mm/hugetlbpage.rst).
/// Each hugepage is physically contiguous, so a buffer inside one is one
/// range for the device.
public enum Hugepages {
    /// The default hugepage size (Hugepagesize in /proc/meminfo), nil if
    /// the kernel has none.
    public static func defaultSize(meminfo: MemInfo? = MemInfo.read()) -> Int? {
        meminfo?["Hugepagesize"].map(Int.init)
    }

    /// How many are free now and how many there are (HugePages_Free, _Total).
    public static func counts(meminfo: MemInfo? = MemInfo.read()) -> (free: Int, total: Int) {
        (Int(meminfo?["HugePages_Free"] ?? 0), Int(meminfo?["HugePages_Total"] ?? 0))
    }
}

extension SharedMemory {
    /// A new memfd of `size` bytes of hugepages (a multiple of the default
    /// hugepage size), sealed like every DMA memfd, every page allocated now
    /// (`allocate`: too few free hugepages is an error here, not a SIGBUS
    /// later).
    public static func hugepages(name: String, size: Int) throws -> SharedMemory {
        guard let page = Hugepages.defaultSize() else {
            throw SystemCallError("no hugepages: this kernel reports no Hugepagesize", .notSupported)
        }
        guard size > 0, size % page == 0 else {
            throw SystemCallError("hugepage memory of \(size) bytes is not whole \(page)-byte pages", .invalidArgument)
        }
        let memory = try SharedMemory(name: name, size: size, hugepages: true)
        do { try memory.allocate(offset: 0, length: size) } catch let e as SystemCallError {
            let (free, total) = Hugepages.counts()
            throw SystemCallError("allocating \(size / page) hugepages of \(page >> 10) KiB (\(free) of \(total) free; "
                                  + "reserve more with vm.nr_hugepages or the hugepages= boot parameter)", e.errno)
        }
        return memory
    }

    /// Whether the memfd is hugepages (a device's DMA memory in no-IOMMU mode).
    public var isHugepages: Bool { cvirtio_is_hugetlbfs(fd.rawValue) == 1 }

    /// The guest-physical address of each `pageSize` page of the memory, in
    /// order (pagemap; CAP_SYS_ADMIN). The pages are mapped here while
    /// pagemap is read (`withPagesMapped`: nothing is allocated or
    /// written), so this also works on a memfd taken back from systemd's
    /// fd store.
    public func physicalPages(pageSize: Int) throws -> [UInt64] {
        guard pageSize >= PageMap.pageSize, size % pageSize == 0 else {
            throw SystemCallError("memory of \(size) bytes is not whole \(pageSize)-byte pages", .invalidArgument)
        }
        let frames = try withPagesMapped(0..<size) { try PageMap.frames(of: self, 0..<size) }
        let step = pageSize / PageMap.pageSize
        var addresses: [UInt64] = []
        for start in stride(from: 0, to: size, by: pageSize) {
            let first = start / PageMap.pageSize
            let address = frames[first] << 12
            // A hugepage is one run of frames; anything else is not one.
            guard (1..<step).allSatisfy({ frames[first + $0] == frames[first] + UInt64($0) }) else {
                throw SystemCallError("pagemap: the page at offset \(start) is not physically contiguous", .invalidArgument)
            }
            guard address % UInt64(pageSize) == 0 else {
                throw SystemCallError("pagemap: the page at offset \(start) is at \(String(address, radix: 16)), "
                                      + "not on a \(pageSize)-byte boundary (not a hugepage?)", .invalidArgument)
            }
            addresses.append(address)
        }
        return addresses
    }
}
