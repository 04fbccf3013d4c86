import Testing
import VirtioCore
import VirtioSoftDevice
@testable import virtiod_console

@Suite struct ConsoleConfigTests {
    let le = ConfigSpaceModel.le

    @Test func sizeAndPorts() throws {
        let f = ConsoleFeatures([.size, .multiport]).rawValue
        let c = try ConsoleConfig.read(ConfigSpaceModel.device(.console, features: f, config: le(80, 2) + le(25, 2) + le(31, 4) + le(0, 4)),
                                       negotiated: f)
        #expect(c["cols"] == .number(80) && c["rows"] == .number(25) && c["max_nr_ports"] == .number(31))
    }
}
