import Atomics
import Glibc
import SystemPackage

/// Device registers in one VFIO region (a BAR): mapped into this process when
/// the kernel allows it, otherwise reached with pread/pwrite on the device fd.
/// Each access is one load or store of exactly the field's width, as device
/// registers require (virtio 1.2 §4.1.3.1).
public final class MMIORegion: @unchecked Sendable {
    // SAFETY: `base` (when non-nil) is a MAP_SHARED mapping of `size` bytes of
    // the device fd, unmapped in deinit only. Every access checks
    // offset + width <= size and natural alignment first, and goes through a
    // relaxed atomic of the field's width, which the compiler emits as a
    // single load/store of that width (no tearing, no merging, no elision).
    public let info: VFIORegionInfo
    public let size: Int
    private let base: UnsafeMutableRawPointer?
    private let device: VFIODevice

    public init(device: VFIODevice, info: VFIORegionInfo) throws {
        self.device = device
        self.info = info
        self.size = Int(info.size)
        if info.mappable {
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, device.fd.rawValue, off_t(info.offset))
            guard let p, p != MAP_FAILED else { throw SystemCallError("mmap BAR \(info.index)") }
            base = p
        } else {
            base = nil
        }
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
                     "register access \(offset)+\(MemoryLayout<T>.size) outside BAR \(info.index) of \(size) bytes")
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
            (try? device.read(region: info, offset: offset, into: buf)) != nil
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
        let ok = withUnsafeBytes(of: &le) { buf in (try? device.write(region: info, offset: offset, from: buf)) != nil }
        if !ok { failedAccesses &+= 1 }
    }

    /// Copy bytes out one at a time (device-specific config is byte-addressed).
    public func readBytes(_ offset: Int, into buffer: UnsafeMutableRawBufferPointer) {
        for i in 0..<buffer.count { buffer[i] = load8(offset + i) }
    }
}
