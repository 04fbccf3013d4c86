import VirtioCore

/// The ublk driver's user ABI (include/uapi/linux/ublk_cmd.h as of Linux
/// 6.12; Documentation/block/ublk.rst): command numbers, flags and the
/// structs that travel in URING_CMD payloads or through their buffers, as
/// little-endian bytes at fixed offsets.
public enum UblkABI {
    /// `_IOC(dir, 'u', nr, size)`: the ioctl-style encodings every kernel
    /// with UBLK_F_CMD_IOCTL_ENCODE takes (the legacy bare numbers may be
    /// compiled out: CONFIG_BLKDEV_UBLK_LEGACY_OPCODES).
    static func ioc(_ dir: UInt32, _ nr: UInt32, _ size: UInt32) -> UInt32 {
        dir << 30 | size << 16 | UInt32(UInt8(ascii: "u")) << 8 | nr
    }
    static let read: UInt32 = 2, readWrite: UInt32 = 3

    // Control commands (on /dev/ublk-control; payload: `ControlCommand`).
    public static let getDeviceInfo = ioc(read, 0x02, 32)
    public static let addDevice = ioc(readWrite, 0x04, 32)
    public static let deleteDevice = ioc(readWrite, 0x05, 32)
    public static let startDevice = ioc(readWrite, 0x06, 32)
    public static let stopDevice = ioc(readWrite, 0x07, 32)
    public static let setParameters = ioc(readWrite, 0x08, 32)
    public static let startUserRecovery = ioc(readWrite, 0x10, 32)
    public static let endUserRecovery = ioc(readWrite, 0x11, 32)
    /// DEL_DEV without waiting for the last opener (6.9+).
    public static let deleteDeviceAsync = ioc(read, 0x14, 32)

    // Queue commands (on /dev/ublkcN; payload: `IOCommand`).
    public static let fetchRequest = ioc(readWrite, 0x20, 16)
    public static let commitAndFetchRequest = ioc(readWrite, 0x21, 16)

    /// A FETCH completes with this when a request arrived…
    public static let resultOK: Int32 = 0
    /// …and with -ENODEV when the queue is torn down (the server goes away).
    public static let resultAbort: Int32 = -19

    // Device flags (ADD_DEV).
    /// I/O waits while no server runs; a new one takes over with
    /// START_USER_RECOVERY / END_USER_RECOVERY.
    public static let flagUserRecovery: UInt64 = 1 << 3
    /// Requests the old server had and never answered are issued again to the new one.
    public static let flagUserRecoveryReissue: UInt64 = 1 << 4

    public enum State: UInt16, Sendable {
        case dead = 0, live = 1, quiesced = 2, failIO = 3
    }

    // Request operations (`IODescriptor.operation`).
    public static let opRead: UInt8 = 0, opWrite: UInt8 = 1, opFlush: UInt8 = 2, opDiscard: UInt8 = 3
    public static let opWriteZeroes: UInt8 = 5

    // ublk_param_basic.attrs
    public static let attrReadOnly: UInt32 = 1 << 0, attrVolatileCache: UInt32 = 1 << 2
    static let paramTypeBasic: UInt32 = 1 << 0, paramTypeDiscard: UInt32 = 1 << 1

    /// Per-queue descriptor area of /dev/ublkcN: queue q's is mapped at
    /// q × the size for the largest depth (UBLK_MAX_QUEUE_DEPTH descriptors, page-rounded).
    public static let maxQueueDepth = 4096
    public static let descriptorSize = 24
    public static func descriptorAreaOffset(queue: Int) -> Int { queue * roundUpToPage(maxQueueDepth * descriptorSize) }
    public static func descriptorAreaSize(depth: Int) -> Int { roundUpToPage(depth * descriptorSize) }
    static func roundUpToPage(_ n: Int) -> Int { (n + 4095) / 4096 * 4096 }

    /// struct ublksrv_ctrl_cmd (32 bytes).
    public struct ControlCommand: Equatable {
        public var deviceID: UInt32
        public var queueID: UInt16 = 0xffff
        public var length: UInt16 = 0
        public var address: UInt64 = 0
        public var data0: UInt64 = 0

        public init(deviceID: UInt32) { self.deviceID = deviceID }

        public var bytes: [UInt8] {
            var w = ByteWriter()
            w.u32(deviceID); w.u16(queueID); w.u16(length); w.u64(address); w.u64(data0); w.zeros(8)
            return w.bytes
        }
    }

    /// struct ublksrv_ctrl_dev_info (64 bytes).
    public struct DeviceInfo: Equatable, Sendable {
        public var queues: UInt16
        public var depth: UInt16
        public var state: UInt16 = 0
        public var maxIOBytes: UInt32
        public var deviceID: UInt32
        public var serverPID: Int32 = -1
        public var flags: UInt64

        public init(queues: UInt16, depth: UInt16, maxIOBytes: UInt32, deviceID: UInt32, flags: UInt64) {
            self.queues = queues
            self.depth = depth
            self.maxIOBytes = maxIOBytes
            self.deviceID = deviceID
            self.flags = flags
        }

        public static let size = 64

        public var bytes: [UInt8] {
            var w = ByteWriter()
            w.u16(queues); w.u16(depth); w.u16(state); w.zeros(2); w.u32(maxIOBytes); w.u32(deviceID)
            w.u32(UInt32(bitPattern: serverPID)); w.zeros(4); w.u64(flags); w.zeros(Self.size - 32)
            return w.bytes
        }

        public init?(_ b: [UInt8]) {
            guard b.count >= Self.size else { return nil }
            var r = ByteReader(bytes: b)
            queues = r.u16(); depth = r.u16(); state = r.u16(); _ = r.u16(); maxIOBytes = r.u32(); deviceID = r.u32()
            serverPID = Int32(bitPattern: r.u32()); _ = r.u32(); flags = r.u64()
        }
    }

    /// struct ublk_params with its basic and discard parts (64 bytes as sent).
    public struct Parameters: Equatable, Sendable {
        public var attributes: UInt32 = 0
        public var logicalBlockShift: UInt8 = 9
        public var physicalBlockShift: UInt8 = 9
        public var ioOptimalShift: UInt8 = 9
        public var ioMinimumShift: UInt8 = 9
        public var maxSectors: UInt32
        public var sectors: UInt64
        /// Discard and write-zeroes limits; no DISCARD part when both are 0.
        public var maxDiscardSectors: UInt32 = 0
        public var maxWriteZeroesSectors: UInt32 = 0
        public var discardGranularity: UInt32 = 512
        public var discardAlignment: UInt32 = 0

        public init(maxSectors: UInt32, sectors: UInt64) {
            self.maxSectors = maxSectors
            self.sectors = sectors
        }

        public static let size = 64

        public var bytes: [UInt8] {
            let discard = maxDiscardSectors > 0 || maxWriteZeroesSectors > 0
            var w = ByteWriter()
            w.u32(UInt32(Self.size)); w.u32(paramTypeBasic | (discard ? paramTypeDiscard : 0))
            // basic: attrs, four shifts, max_sectors, chunk_sectors, dev_sectors, virt_boundary_mask
            w.u32(attributes); w.u8(logicalBlockShift); w.u8(physicalBlockShift); w.u8(ioOptimalShift); w.u8(ioMinimumShift)
            w.u32(maxSectors); w.u32(0); w.u64(sectors); w.u64(0)
            // discard: alignment, granularity, max_discard_sectors, max_write_zeroes_sectors, max_discard_segments
            if discard {
                w.u32(discardAlignment); w.u32(discardGranularity); w.u32(maxDiscardSectors); w.u32(maxWriteZeroesSectors)
                w.u16(maxDiscardSectors > 0 ? 1 : 0)
            }
            w.zeros(Self.size - w.bytes.count)
            return w.bytes
        }
    }

    /// struct ublksrv_io_cmd (16 bytes).
    public struct IOCommand: Equatable {
        public var queue: UInt16
        public var tag: UInt16
        public var result: Int32
        public var bufferAddress: UInt64

        public init(queue: UInt16, tag: UInt16, result: Int32, bufferAddress: UInt64) {
            self.queue = queue
            self.tag = tag
            self.result = result
            self.bufferAddress = bufferAddress
        }

        public var bytes: [UInt8] {
            var w = ByteWriter()
            w.u16(queue); w.u16(tag); w.u32(UInt32(bitPattern: result)); w.u64(bufferAddress)
            return w.bytes
        }
    }

    /// struct ublksrv_io_desc (24 bytes): what the kernel asks of one tag.
    public struct IODescriptor: Equatable, Sendable {
        public var operation: UInt8
        public var flags: UInt32
        public var sectors: UInt32
        public var startSector: UInt64
        public var bufferAddress: UInt64

        public init(operation: UInt8, flags: UInt32 = 0, sectors: UInt32, startSector: UInt64, bufferAddress: UInt64) {
            self.operation = operation
            self.flags = flags
            self.sectors = sectors
            self.startSector = startSector
            self.bufferAddress = bufferAddress
        }

        public init(_ b: [UInt8]) {
            var r = ByteReader(bytes: b)
            let opFlags = r.u32()
            operation = UInt8(opFlags & 0xff)
            flags = opFlags >> 8
            sectors = r.u32()
            startSector = r.u64()
            bufferAddress = r.u64()
        }
    }
}
