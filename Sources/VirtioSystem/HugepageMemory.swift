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
    /// hugepage size), every page allocated now (MADV_POPULATE_WRITE: too
    /// few free hugepages is an error here, not a SIGBUS later), its size
    /// sealed like every DMA memfd.
    public static func hugepages(name: String, size: Int) throws -> SharedMemory {
        guard let page = Hugepages.defaultSize() else {
            throw SystemCallError("no hugepages: this kernel reports no Hugepagesize", .notSupported)
        }
        guard size > 0, size % page == 0 else {
            throw SystemCallError("hugepage memory of \(size) bytes is not whole \(page)-byte pages", .invalidArgument)
        }
        let fd = cvirtio_memfd_create(name, cvirtio_MFD_CLOEXEC() | cvirtio_MFD_ALLOW_SEALING() | cvirtio_MFD_HUGETLB())
        guard fd >= 0 else { throw SystemCallError("memfd_create(MFD_HUGETLB)") }
        let memory: SharedMemory
        do {
            guard ftruncate(fd, off_t(size)) == 0 else { throw SystemCallError("ftruncate of a hugepage memfd") }
            guard cvirtio_memfd_seal_size(fd) == 0 else { throw SystemCallError("F_ADD_SEALS") }
            memory = try SharedMemory(mapping: FileDescriptor(rawValue: fd), size: size, ownsFD: true)
        } catch {
            close(fd)
            throw error
        }
        let populateWrite: Int32 = 23 // MADV_POPULATE_WRITE (linux/mman.h)
        guard madvise(memory.base, size, populateWrite) == 0 else {
            let e = Errno(rawValue: errno)
            let (free, total) = Hugepages.counts()
            throw SystemCallError("allocating \(size / page) hugepages of \(page >> 10) KiB (\(free) of \(total) free; "
                                  + "reserve more with vm.nr_hugepages or the hugepages= boot parameter)", e)
        }
        return memory
    }

    /// Whether the memfd is hugepages (a device's DMA memory in no-IOMMU mode).
    public var isHugepages: Bool { cvirtio_is_hugetlbfs(fd.rawValue) == 1 }

    /// The guest-physical address of each `pageSize` page of the memory, in
    /// order (pagemap; CAP_SYS_ADMIN). The pages are mapped here first
    /// (MADV_POPULATE_READ: nothing is allocated or written), so this also
    /// works on a memfd taken back from systemd's fd store.
    public func physicalPages(pageSize: Int) throws -> [UInt64] {
        guard pageSize >= PageMap.pageSize, size % pageSize == 0 else {
            throw SystemCallError("memory of \(size) bytes is not whole \(pageSize)-byte pages", .invalidArgument)
        }
        let populateRead: Int32 = 22 // MADV_POPULATE_READ (linux/mman.h)
        guard madvise(base, size, populateRead) == 0 else { throw SystemCallError("madvise(POPULATE_READ)") }
        let frames = try PageMap.frames(of: self, 0..<size)
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
