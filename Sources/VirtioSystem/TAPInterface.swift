import CVirtioShim
import Glibc
import SystemPackage
import VirtioCore

/// A TAP interface with virtio-net headers (IFF_TAP | IFF_NO_PI |
/// IFF_VNET_HDR): every frame read or written is preceded by a
/// `struct virtio_net_hdr` of `vnetHeaderSize` bytes, which is exactly the
/// header a virtio-net device uses (virtio 1.2 §5.1.6), so csum/GSO metadata
/// passes straight through. The supervisor creates it (CAP_NET_ADMIN) and
/// holds the fd, so the interface outlives plugin restarts.
public struct TAPInterface: Sendable {
    public let fd: FileDescriptor
    public let name: String

    /// Create the interface `name` (`exclusive`: fail if it exists) or attach
    /// another queue to it; a template like "vtnet%d" lets the kernel number it.
    public static func open(name: String, multiQueue: Bool = false, exclusive: Bool = false) throws -> TAPInterface {
        var out = [CChar](repeating: 0, count: 16)
        let fd = cvirtio_tap_open(name, multiQueue ? 1 : 0, exclusive ? 1 : 0, &out)
        guard fd >= 0 else {
            if errno == EBUSY { throw SystemCallError("TUNSETIFF \(name): the interface exists already (another TAP's, or a device's)") }
            throw SystemCallError("TUNSETIFF \(name)")
        }
        let chosen = out.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return TAPInterface(fd: FileDescriptor(rawValue: fd), name: chosen)
    }

    public init(fd: FileDescriptor, name: String) {
        self.fd = fd
        self.name = name
    }

    /// The interface a TAP fd is attached to (from /proc/self/fdinfo, "iff:"),
    /// for fds taken back from systemd's fd store.
    public static func name(of fd: FileDescriptor) throws -> String {
        guard let name = TextFile.field("iff", in: "/proc/self/fdinfo/\(fd.rawValue)") else {
            throw SystemCallError("fd \(fd.rawValue) is not attached to a TAP interface", .invalidArgument)
        }
        return name
    }

    /// virtio-net header size on this fd (12 for VERSION_1 devices).
    public func setVnetHeaderSize(_ size: Int) throws {
        guard cvirtio_tap_set_vnet_header_size(fd.rawValue, CInt(size)) == 0 else { throw SystemCallError("TUNSETVNETHDRSZ") }
    }

    /// TUN_F_* offloads the reader (the plugin) accepts from the kernel.
    public func setOffload(_ flags: UInt32) throws {
        guard cvirtio_tap_set_offload(fd.rawValue, flags) == 0 else { throw SystemCallError("TUNSETOFFLOAD") }
    }

    public func setCarrier(_ up: Bool) throws {
        guard cvirtio_tap_set_carrier(fd.rawValue, up ? 1 : 0) == 0 else { throw SystemCallError("TUNSETCARRIER") }
    }

    public func setMACAddress(_ mac: [UInt8]) throws {
        precondition(mac.count == 6)
        guard cvirtio_if_set_hwaddr(name, mac) == 0 else { throw SystemCallError("SIOCSIFHWADDR \(name)") }
    }

    /// Read one frame (vnet header + packet) straight into `slice` of DMA
    /// memory; its length, or -1 with errno (EAGAIN when none is queued).
    public func readFrame(into region: DMARegion, _ slice: DMASlice) -> Int {
        // SAFETY: `region.pointer` checks the slice lies inside the mapping,
        // and read(2) writes at most `slice.length` bytes there.
        Glibc.read(fd.rawValue, region.pointer(slice), slice.length)
    }

    /// Write one frame gathered from the first `lengths[i]` bytes of each
    /// slice (a packet in mergeable receive buffers); bytes written or -1.
    public func writeFrame(from region: DMARegion, _ slices: [DMASlice], lengths: [Int]) -> Int {
        precondition(slices.count == lengths.count && zip(slices, lengths).allSatisfy { $1 >= 0 && $1 <= $0.length })
        // SAFETY: each iovec points into a slice `region.pointer` checked, for
        // at most that slice's length; the array outlives the writev call.
        let iov = zip(slices, lengths).map { iovec(iov_base: region.pointer($0), iov_len: $1) }
        return iov.withUnsafeBufferPointer { writev(fd.rawValue, $0.baseAddress, Int32($0.count)) }
    }

    public func setMTU(_ mtu: Int) throws {
        guard cvirtio_if_set_mtu(name, CInt(mtu)) == 0 else { throw SystemCallError("SIOCSIFMTU \(name)") }
    }
}
