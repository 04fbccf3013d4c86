import Testing
import VirtioCore
import VirtioSoftDevice

@Suite struct InitializationTests {
    let base = TransportFeatures.version1.rawValue | TransportFeatures.accessPlatform.rawValue

    func device(features: UInt64) -> SoftDevice {
        SoftDevice(model: RAMBlockModel(sectors: 64, features: features), region: DMARegion(anonymousSize: 1 << 20))
    }

    @Test func negotiatesTheOfferedSubsetAndReachesDriverOK() throws {
        let dev = device(features: base | TransportFeatures.eventIndex.rawValue)
        var sawFeaturesOK = false
        let got = try DeviceInitializer(transport: dev).run(
            features: FeatureRequest(required: base, wanted: TransportFeatures.ringPacked.rawValue | TransportFeatures.eventIndex.rawValue | BlockFeatures.flush.rawValue)
        ) { _ in sawFeaturesOK = dev.readStatus().contains(.featuresOK) }
        #expect(sawFeaturesOK)
        #expect(got == base | TransportFeatures.eventIndex.rawValue | BlockFeatures.flush.rawValue)
        #expect(dev.readStatus() == [.acknowledge, .driver, .featuresOK, .driverOK])
        #expect(dev.negotiatedFeatures == got)
    }

    @Test func missingRequiredFeatureFailsTheDevice() {
        let dev = device(features: TransportFeatures.version1.rawValue)
        #expect(throws: InitializationError.missingRequiredFeatures(missing: TransportFeatures.accessPlatform.rawValue, deviceType: .block)) {
            try DeviceInitializer(transport: dev).run(features: FeatureRequest(required: base)) { _ in }
        }
        #expect(dev.readStatus().contains(.failed))
        #expect(!dev.readStatus().contains(.driverOK))
    }

    @Test func featuresOKClearedByDeviceIsDetected() {
        let dev = device(features: base)
        dev.rejectFeatures = true
        #expect(throws: InitializationError.featuresNotAccepted(offered: base)) {
            try DeviceInitializer(transport: dev).run(features: FeatureRequest(required: base)) { _ in }
        }
        #expect(dev.readStatus().contains(.failed))
    }

    @Test func configReadRetriesUntilGenerationIsStable() throws {
        let dev = device(features: base)
        #expect(try dev.readConfig(UInt64.self, at: 0) == 64) // capacity in sectors
        #expect(try dev.readConfig(UInt32.self, at: 20) == 512)
        dev.configChurn = 3
        #expect(try dev.readConfig(UInt64.self, at: 0) == 64)
        #expect(dev.configChurn == 0)
        dev.configChurn = 1000
        #expect(throws: TransportError.configNeverStable(attempts: 64)) { try dev.readConfig(offset: 0, length: 8) }
        #expect(throws: TransportError.configOutOfRange(offset: 56, length: 8, size: 60)) { try dev.readConfig(offset: 56, length: 8) }
    }
}
