import Testing
@testable import virtiod_console

/// The multiport control message layout (virtio 1.2 §5.3.6.2).
@Suite struct ConsoleControlTests {
    @Test func roundTrip() throws {
        let m = ConsoleControl(id: 0x0102_0304, event: .portOpen, value: 1)
        #expect(m.encoded == [4, 3, 2, 1, 6, 0, 1, 0])
        #expect(try ConsoleControl(parsing: m.encoded) == m)
    }

    @Test func portNameStopsAtNUL() throws {
        let m = try ConsoleControl(parsing: [1, 0, 0, 0, 7, 0, 1, 0] + Array("org.qemu.guest_agent.0".utf8) + [0, 0x41])
        #expect(m.event == .portName && m.id == 1 && m.name == "org.qemu.guest_agent.0")
        #expect(try ConsoleControl(parsing: [1, 0, 0, 0, 7, 0, 1, 0, 0]).name == nil)
        #expect(try ConsoleControl(parsing: [1, 0, 0, 0, 7, 0, 1, 0, 0xff, 0xfe]).name == nil, "not UTF-8")
    }

    @Test func resizeIsColsThenRows() throws {
        let m = try ConsoleControl(parsing: [0, 0, 0, 0, 5, 0, 0, 0, 80, 0, 24, 0])
        #expect(m.size?.cols == 80 && m.size?.rows == 24)
        #expect(try ConsoleControl(parsing: [0, 0, 0, 0, 5, 0, 0, 0, 80]).size == nil)
    }

    @Test func badMessages() {
        #expect(throws: ConsoleControl.ParseError.short(7)) { try ConsoleControl(parsing: [0, 0, 0, 0, 1, 0, 1]) }
        #expect(throws: ConsoleControl.ParseError.unknownEvent(99)) { try ConsoleControl(parsing: [0, 0, 0, 0, 99, 0, 0, 0]) }
    }
}
