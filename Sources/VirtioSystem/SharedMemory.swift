import CVirtioShim
import Glibc
import SystemPackage
import VirtioCore

public struct SystemCallError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Errno
    public init(_ call: String, _ errno: Errno = Errno(rawValue: Glibc.errno)) {
        self.call = call
        self.errno = errno
    }
    public var description: String { "\(call): \(errno)" }
}

/// A memfd mapped shared into this process: the DMA memory of a device.
/// The supervisor creates it, maps it for the IOMMU, and passes the fd to a
/// plugin, which maps it again at an address of its own.
public final class SharedMemory: @unchecked Sendable {
    // SAFETY: `base` is a MAP_SHARED mapping of `size` bytes of `fd`, unmapped
    // in deinit only; `DMARegion`s made from it hold this object as owner.
    public let fd: FileDescriptor
    public let size: Int
    public let base: UnsafeMutableRawPointer
    private let ownsFD: Bool

    /// A new anonymous memory file of `size` bytes (zeroed), its size sealed:
    /// whoever else gets the fd can write the memory but never shrink or
    /// grow it (a shrunk memfd would SIGBUS every process mapping it).
    /// `hugepages`: of hugetlbfs pages (MFD_HUGETLB; `size` whole pages).
    public convenience init(name: String, size: Int, hugepages: Bool = false) throws {
        let fd = cvirtio_memfd_create(name, cvirtio_MFD_CLOEXEC() | cvirtio_MFD_ALLOW_SEALING() | (hugepages ? cvirtio_MFD_HUGETLB() : 0))
        guard fd >= 0 else { throw SystemCallError("memfd_create") }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let e = Errno(rawValue: Glibc.errno)
            close(fd)
            throw SystemCallError("ftruncate", e)
        }
        guard cvirtio_memfd_seal_size(fd) == 0 else {
            let e = Errno(rawValue: Glibc.errno)
            close(fd)
            throw SystemCallError("F_ADD_SEALS", e)
        }
        try self.init(mapping: FileDescriptor(rawValue: fd), size: size, ownsFD: true)
    }

    /// Seal the size now (a memfd taken back from systemd's fd store that an
    /// older virtiod made without the seals).
    public func sealSize() throws {
        guard !isSizeSealed else { return }
        guard cvirtio_memfd_seal_size(fd.rawValue) == 0 else { throw SystemCallError("F_ADD_SEALS") }
    }

    /// Whether the memfd's size is sealed (it cannot shrink or grow).
    public var isSizeSealed: Bool {
        let seals = cvirtio_memfd_seals(fd.rawValue)
        return seals >= 0 && seals & 0x6 == 0x6 // F_SEAL_SHRINK | F_SEAL_GROW
    }

    /// Map an existing memory file (e.g. received from the supervisor); it
    /// must hold at least `size` bytes, or touching the end would SIGBUS.
    public init(mapping fd: FileDescriptor, size: Int, ownsFD: Bool) throws {
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0, Int(st.st_size) >= size else {
            throw SystemCallError("memfd of \(st.st_size) bytes, \(size) expected", .invalidArgument)
        }
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0)
        guard let p, p != MAP_FAILED else { throw SystemCallError("mmap") }
        self.fd = fd
        self.size = size
        self.base = p
        self.ownsFD = ownsFD
    }

    deinit {
        munmap(base, size)
        if ownsFD { try? fd.close() }
    }

    /// The whole mapping as a DMA region with the given device address of offset 0.
    public func region(deviceBase: UInt64) -> DMARegion {
        DMARegion(base: base, size: size, deviceBase: deviceBase, owner: self)
    }
}
