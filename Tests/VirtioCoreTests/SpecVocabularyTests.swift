import Testing
import VirtioCore

@Suite struct SpecVocabularyTests {
    @Test func pciIDsMapToDeviceTypes() {
        #expect(VirtioPCIID.deviceType(vendor: 0x1af4, device: 0x1041) == .network)
        #expect(VirtioPCIID.deviceType(vendor: 0x1af4, device: 0x1042) == .block)
        #expect(VirtioPCIID.deviceType(vendor: 0x1af4, device: 0x1049) == .ninePTransport)
        #expect(VirtioPCIID.deviceType(vendor: 0x1af4, device: 0x1000) == .network)
        #expect(VirtioPCIID.deviceType(vendor: 0x1af4, device: 0x1003) == .console)
        #expect(VirtioPCIID.deviceType(vendor: 0x1af4, device: 0x1009) == .ninePTransport)
        #expect(VirtioPCIID.deviceType(vendor: 0x8086, device: 0x1041) == nil)
        #expect(VirtioPCIID.deviceType(vendor: 0x1af4, device: 0x1100) == nil)
        #expect(VirtioPCIID.isTransitional(device: 0x1001))
        #expect(!VirtioPCIID.isTransitional(device: 0x1041))
    }

    @Test func featureNamesCoverTransportAndDeviceBits() {
        let bits = TransportFeatures.version1.rawValue | TransportFeatures.ringPacked.rawValue
            | NetFeatures.mac.rawValue | NetFeatures.hostTSO4.rawValue | NetFeatures.speedDuplex.rawValue | (1 << 45)
        #expect(featureNames(bits, deviceType: .network) == ["VERSION_1", "RING_PACKED", "MAC", "HOST_TSO4", "SPEED_DUPLEX", "bit45"])
        #expect(featureNames(1 << 9, deviceType: .block) == ["FLUSH"])
        #expect(featureNames(1 << 0, deviceType: .ninePTransport) == ["MOUNT_TAG"])
        #expect(featureNames(1 << 1, deviceType: .balloon) == ["STATS_VQ"])
        #expect(featureNames(1 << 1, deviceType: .console) == ["MULTIPORT"])
    }

    @Test func statusNames() {
        #expect(DeviceStatus().description == "reset")
        #expect(DeviceStatus([.acknowledge, .driver, .featuresOK, .driverOK]).description
                == "ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK")
        #expect(DeviceStatus(rawValue: 0x90).names == ["FAILED", "bit4"])
    }

    @Test func deviceTypeNamesRoundTrip() {
        for t in DeviceType.allCases { #expect(DeviceType(name: t.description) == t) }
    }
}
