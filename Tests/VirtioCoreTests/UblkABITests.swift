import Testing
import VirtioSystem

/// The ublk ABI as Linux 6.12's include/uapi/linux/ublk_cmd.h lays it out:
/// command numbers and struct offsets, checked byte by byte.
@Suite struct UblkABITests {
    @Test func commandNumbersAreTheIoctlEncodings() {
        // UBLK_U_CMD_* = _IOWR/_IOR('u', nr, struct ublksrv_ctrl_cmd), UBLK_U_IO_* = _IOWR('u', nr, struct ublksrv_io_cmd)
        #expect(UblkABI.getDeviceInfo == 0x8020_7502)
        #expect(UblkABI.addDevice == 0xC020_7504)
        #expect(UblkABI.startDevice == 0xC020_7506)
        #expect(UblkABI.setParameters == 0xC020_7508)
        #expect(UblkABI.startUserRecovery == 0xC020_7510)
        #expect(UblkABI.endUserRecovery == 0xC020_7511)
        #expect(UblkABI.deleteDeviceAsync == 0x8020_7514)
        #expect(UblkABI.fetchRequest == 0xC010_7520)
        #expect(UblkABI.commitAndFetchRequest == 0xC010_7521)
    }

    @Test func controlCommandLayout() {
        var c = UblkABI.ControlCommand(deviceID: 0x0403_0201)
        c.length = 64
        c.address = 0x1122_3344_5566_7788
        c.data0 = 4242
        let b = c.bytes
        #expect(b.count == 32)
        #expect(Array(b[0..<4]) == [1, 2, 3, 4])
        #expect(Array(b[4..<6]) == [0xff, 0xff], "queue_id -1: not a queue command")
        #expect(Array(b[6..<8]) == [64, 0])
        #expect(Array(b[8..<16]) == [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        #expect(Array(b[16..<24]) == [0x92, 0x10, 0, 0, 0, 0, 0, 0])
        #expect(b[24...].allSatisfy { $0 == 0 })
    }

    @Test func deviceInfoRoundTrips() throws {
        var info = UblkABI.DeviceInfo(queues: 4, depth: 64, maxIOBytes: 65536, deviceID: 7,
                                      flags: UblkABI.flagUserRecovery | UblkABI.flagUserRecoveryReissue)
        info.state = UblkABI.State.quiesced.rawValue
        info.serverPID = 1234
        let b = info.bytes
        #expect(b.count == 64)
        #expect(Array(b[0..<6]) == [4, 0, 64, 0, 2, 0])
        #expect(Array(b[8..<12]) == [0, 0, 1, 0])
        #expect(Array(b[12..<16]) == [7, 0, 0, 0])
        #expect(Array(b[16..<20]) == [0xd2, 0x04, 0, 0])
        #expect(b[24] == 0x18)
        #expect(UblkABI.DeviceInfo(b) == info)
        #expect(UblkABI.DeviceInfo(Array(b[0..<63])) == nil)
    }

    @Test func parametersPlaceBasicAndDiscard() {
        var p = UblkABI.Parameters(maxSectors: 128, sectors: 0x1_0000_0001)
        p.attributes = UblkABI.attrReadOnly | UblkABI.attrVolatileCache
        p.logicalBlockShift = 12
        p.physicalBlockShift = 12
        let plain = p.bytes
        #expect(plain.count == 64)
        #expect(Array(plain[0..<8]) == [64, 0, 0, 0, 1, 0, 0, 0], "len 64, types BASIC")
        #expect(Array(plain[8..<16]) == [5, 0, 0, 0, 12, 12, 9, 9])
        #expect(Array(plain[16..<20]) == [128, 0, 0, 0])
        #expect(Array(plain[24..<32]) == [1, 0, 0, 0, 1, 0, 0, 0])
        #expect(plain[40...].allSatisfy { $0 == 0 })
        p.maxDiscardSectors = 8192
        p.maxWriteZeroesSectors = 4096
        p.discardGranularity = 4096
        let b = p.bytes
        #expect(b[4] == 3, "types BASIC | DISCARD")
        #expect(Array(b[44..<48]) == [0, 0x10, 0, 0])
        #expect(Array(b[48..<52]) == [0, 0x20, 0, 0])
        #expect(Array(b[52..<56]) == [0, 0x10, 0, 0])
        #expect(Array(b[56..<58]) == [1, 0], "one discard segment")
    }

    @Test func ioCommandAndDescriptor() {
        let c = UblkABI.IOCommand(queue: 3, tag: 63, result: -5, bufferAddress: 0x7f00_0000_1000)
        #expect(c.bytes == [3, 0, 63, 0, 0xfb, 0xff, 0xff, 0xff, 0, 0x10, 0, 0, 0, 0x7f, 0, 0])
        let d = UblkABI.IODescriptor([0x01, 0x20, 0, 0, 16, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x7f, 0, 0])
        #expect(d == UblkABI.IODescriptor(operation: UblkABI.opWrite, flags: 0x20, sectors: 16, startSector: 8, bufferAddress: 0x7f00_0000_1000))
        #expect(UblkABI.descriptorAreaOffset(queue: 1) == 98304)
        #expect(UblkABI.descriptorAreaSize(depth: 64) == 4096)
    }
}
