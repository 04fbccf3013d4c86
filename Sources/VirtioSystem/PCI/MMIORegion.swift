import Atomics
import Glibc
import SystemPackage

/// Device registers in one BAR: mapped into this process when the kernel
/// allows it, otherwise reached with pread/pwrite — a VFIO region of the
/// device fd, or a sysfs resourceN file (uio_pci_generic).
/// Each access is one load or store of exactly the field's width, as device
/// registers require (virtio 1.2 §4.1.3.1).
public final class MMIORegion: @unchecked Sendable {
    // SAFETY: `base` (when non-nil) is a MAP_SHARED mapping of `size` bytes of
    // `fd` at `fileOffset`, unmapped in deinit only. Every access checks
    // offset + width <= size and natural alignment first, and goes through a
    // relaxed atomic of the field's width, which the compiler emits as a
    // single load/store of that width (no tearing, no merging, no elision).
    /// The BAR's number.
    public let index: Int
    public let size: Int
    private let base: UnsafeMutableRawPointer?
    /// Where the BAR lies in `fd`, for pread/pwrite when it is not mapped.
    private let fd: FileDescriptor
    private let fileOffset: Int64

    /// BAR `index`: `size` bytes of `fd` from `fileOffset`, mapped if `mappable`.
    public init(fd: FileDescriptor, fileOffset: UInt64, size: Int, index: Int, mappable: Bool) throws {
        self.fd = fd
        self.fileOffset = Int64(fileOffset)
        self.index = index
        self.size = size
        if mappable {
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, off_t(fileOffset))
            guard let p, p != MAP_FAILED else { throw SystemCallError("mmap BAR \(index)") }
            base = p
        } else {
            base = nil
        }
    }

    /// A VFIO region of the device fd.
    public convenience init(device: VFIODevice, info: VFIORegionInfo) throws {
        try self.init(fd: device.fd, fileOffset: info.offset, size: Int(info.size), index: Int(info.index), mappable: info.mappable)
    }

    deinit { if let base { munmap(base, size) } }

    public var isMapped: Bool { base != nil }

    /// Register reads and writes the device fd refused (pread/pwrite
    /// failed): reads then see all ones, writes are lost — counted here,
    /// reported by plugins, never silent.
    public private(set) var failedAccesses: UInt64 = 0

    @inline(__always)
    private func check<T>(_ offset: Int, _: T.Type) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= size && offset % MemoryLayout<T>.size == 0,
                     "register access \(offset)+\(MemoryLayout<T>.size) outside BAR \(index) of \(size) bytes")
    }

    public func load8(_ offset: Int) -> UInt8 { load(offset, UInt8.self) }
    public func load16(_ offset: Int) -> UInt16 { load(offset, UInt16.self) }
    public func load32(_ offset: Int) -> UInt32 { load(offset, UInt32.self) }
    public func store8(_ offset: Int, _ value: UInt8) { store(offset, value) }
    public func store16(_ offset: Int, _ value: UInt16) { store(offset, value) }
    public func store32(_ offset: Int, _ value: UInt32) { store(offset, value) }

    /// A 64-bit register written as two 32-bit halves, low first (§4.1.3.1).
    public func store64(_ offset: Int, _ value: UInt64) {
        store32(offset, UInt32(truncatingIfNeeded: value))
        store32(offset + 4, UInt32(truncatingIfNeeded: value >> 32))
    }

    @inline(__always)
    private func load<T: FixedWidthInteger & AtomicValue>(_ offset: Int, _: T.Type) -> T
    where T.AtomicRepresentation.Value == T {
        check(offset, T.self)
        if let base {
            let p = (base + offset).assumingMemoryBound(to: T.AtomicRepresentation.self)
            return T(littleEndian: UnsafeAtomic<T>(at: p).load(ordering: .relaxed))
        }
        // A failed read returns all ones, as a PCI read of a missing device does.
        var v = T.zero
        let ok = withUnsafeMutableBytes(of: &v) { buf in
            pread(fd.rawValue, buf.baseAddress, buf.count, off_t(fileOffset) + off_t(offset)) == buf.count
        }
        if !ok { failedAccesses &+= 1 }
        return ok ? T(littleEndian: v) : T.max
    }

    @inline(__always)
    private func store<T: FixedWidthInteger & AtomicValue>(_ offset: Int, _ value: T)
    where T.AtomicRepresentation.Value == T {
        check(offset, T.self)
        if let base {
            let p = (base + offset).assumingMemoryBound(to: T.AtomicRepresentation.self)
            UnsafeAtomic<T>(at: p).store(value.littleEndian, ordering: .relaxed)
            return
        }
        var le = value.littleEndian
        let ok = withUnsafeBytes(of: &le) { buf in
            pwrite(fd.rawValue, buf.baseAddress, buf.count, off_t(fileOffset) + off_t(offset)) == buf.count
        }
        if !ok { failedAccesses &+= 1 }
    }

    /// Copy bytes out one at a time (device-specific config is byte-addressed).
    public func readBytes(_ offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        for i in 0..<buffer.count { buffer[i] = load8(offset + i) }
    }
}
