import VirtioCore

enum TAPOffloads {
    /// TUN_F_* flags for TUNSETOFFLOAD from what the device takes on transmit
    /// (linux/if_tun.h: CSUM 0x01, TSO4 0x02, TSO6 0x04, TSO_ECN 0x08).
    static func flags(_ negotiated: NetFeatures) -> UInt32 {
        var flags: UInt32 = 0
        if negotiated.contains(.csum) { flags |= 0x01 }
        if negotiated.contains(.hostTSO4) { flags |= 0x02 }
        if negotiated.contains(.hostTSO6) { flags |= 0x04 }
        if negotiated.contains(.hostECN) { flags |= 0x08 }
        return flags
    }
}
