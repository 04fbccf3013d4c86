import Testing
import VirtioCore
import VirtioSoftDevice
@testable import virtiod_balloon

@Suite struct BalloonConfigTests {
    let le = ConfigSpaceModel.le

    @Test func targetAndActual() throws {
        let b = try BalloonConfig.read(ConfigSpaceModel.device(.balloon, features: 0, config: le(131072, 4) + le(512, 4)), negotiated: 0)
        #expect(b["num_pages"] == .number(131072) && b["actual"] == .number(512))
    }
}
