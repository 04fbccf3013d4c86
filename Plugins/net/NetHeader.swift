import VirtioCore

/// struct virtio_net_hdr (virtio 1.2 §5.1.6): 12 bytes with VERSION_1.
///   u8 flags; u8 gso_type; le16 hdr_len; le16 gso_size; le16 csum_start;
///   le16 csum_offset; le16 num_buffers
public enum NetHeader {
    public static let size = 12
    public static let flagNeedsCsum: UInt8 = 1
    public static let flagDataValid: UInt8 = 2
    public static let gsoNone: UInt8 = 0, gsoTCPv4: UInt8 = 1, gsoUDP: UInt8 = 3, gsoTCPv6: UInt8 = 4, gsoUDPL4: UInt8 = 5
    public static let gsoECN: UInt8 = 0x80

    /// Where num_buffers sits (the device's count of merged receive buffers).
    public static let numBuffersOffset = 10

    /// Check the header the device wrote at the start of `slice` (read once,
    /// field by field) for a frame of `frameLength` bytes after it.
    public static func isAcceptable(in region: DMARegion, _ slice: DMASlice, frameLength: Int,
                                    negotiated: NetFeatures) -> Bool {
        guard slice.length >= size else { return false }
        return isAcceptable(flags: region.load8(slice, at: 0), gsoType: region.load8(slice, at: 1),
                            csumStart: region.loadLE16(slice, at: 6), csumOffset: region.loadLE16(slice, at: 8),
                            frameLength: frameLength, negotiated: negotiated)
    }

    /// Whether a header the device wrote asks only for what was negotiated
    /// (§5.1.6.3/§5.1.6.4): a partial checksum needs GUEST_CSUM, each GSO
    /// type its GUEST_ feature, and csum_start + csum_offset must lie in the frame.
    public static func isAcceptable(flags: UInt8, gsoType: UInt8, csumStart: UInt16, csumOffset: UInt16,
                             frameLength: Int, negotiated: NetFeatures) -> Bool {
        guard flags & ~(flagNeedsCsum | flagDataValid) == 0 else { return false }
        if flags & flagNeedsCsum != 0 {
            guard negotiated.contains(.guestCsum), Int(csumStart) + Int(csumOffset) + 2 <= frameLength else { return false }
        }
        if gsoType & gsoECN != 0, !negotiated.contains(.guestECN) { return false }
        switch gsoType & ~gsoECN {
        case gsoNone: return true
        case gsoTCPv4: return negotiated.contains(.guestTSO4)
        case gsoTCPv6: return negotiated.contains(.guestTSO6)
        case gsoUDP: return negotiated.contains(.guestUFO)
        case gsoUDPL4: return negotiated.contains(.guestUSO4) || negotiated.contains(.guestUSO6)
        default: return false
        }
    }
}
