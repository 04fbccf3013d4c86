import Glibc
import SystemPackage

/// /dev/ublk-control: adds, starts, recovers, stops and deletes ublk devices
/// (Documentation/block/ublk.rst, "Control commands"). Each command is a
/// URING_CMD on a small ring of its own and answered before the call
/// returns; the ones that wait for a server (START_DEV, END_USER_RECOVERY)
/// are only sent once the server has fetched on every queue, so they do
/// not wait long. Needs CAP_SYS_ADMIN (the supervisor's).
public final class UblkControl {
    public static let path = "/dev/ublk-control"
    /// Whether this kernel has ublk (ublk_drv loaded).
    public static var available: Bool { access(path, F_OK) == 0 }

    private let control: FileDescriptor
    private let ring: IOURing

    public init() throws {
        control = try FileDescriptor.open(Self.path, .readWrite, options: [.closeOnExec])
        do { ring = try IOURing(entries: 4) } catch {
            try? control.close()
            throw error
        }
    }

    deinit { try? control.close() }

    public struct CommandError: Error, CustomStringConvertible {
        public let command: String
        public let errno: Errno?
        public var description: String { "ublk \(command): " + (errno.map { "\($0)" } ?? "no answer within the time limit") }
    }

    /// Send one control command; `buffer` (if any) is what `addr`/`len`
    /// point at, read and written by the kernel. Its result (>= 0).
    @discardableResult
    private func send(_ name: String, _ op: UInt32, device: UInt32, data0: UInt64 = 0, buffer: inout [UInt8],
                      timeoutMS: UInt32 = 10_000) throws -> Int32 {
        // SAFETY: the kernel reads and writes `memory` (a copy of `buffer`,
        // owned by this call) between the submission and its answer. It is
        // freed on every way out except one: submitted and not answered
        // within the time limit, when the kernel may still write to it.
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(buffer.count, 1), alignment: 8)
        var kernelMayWrite = false
        defer { if !kernelMayWrite { memory.deallocate() } }
        memory.copyBytes(from: buffer)
        var command = UblkABI.ControlCommand(deviceID: device)
        command.data0 = data0
        if !buffer.isEmpty {
            command.length = UInt16(buffer.count)
            command.address = UInt64(UInt(bitPattern: memory.baseAddress))
        }
        let payload = command.bytes
        let queued = try payload.withUnsafeBytes { try ring.queueCommand(fd: control, op: op, payload: $0, userData: UInt64(op)) }
        guard queued else { throw CommandError(command: name, errno: .resourceTemporarilyUnavailable) }
        try ring.submit()
        kernelMayWrite = true
        guard let done = try ring.wait(timeoutMS: timeoutMS) else { throw CommandError(command: name, errno: nil) }
        kernelMayWrite = false
        buffer = Array(UnsafeRawBufferPointer(rebasing: memory[0..<buffer.count]))
        guard done.result >= 0 else { throw CommandError(command: name, errno: Errno(rawValue: -done.result)) }
        return done.result
    }

    private func send(_ name: String, _ op: UInt32, device: UInt32, data0: UInt64 = 0, timeoutMS: UInt32 = 10_000) throws {
        var none: [UInt8] = []
        try send(name, op, device: device, data0: data0, buffer: &none, timeoutMS: timeoutMS)
    }

    /// ADD_DEV: a new device (the kernel picks its number); what the kernel granted.
    public func add(_ info: UblkABI.DeviceInfo) throws -> UblkABI.DeviceInfo {
        var buffer = info.bytes
        try send("ADD_DEV", UblkABI.addDevice, device: info.deviceID, buffer: &buffer)
        guard let granted = UblkABI.DeviceInfo(buffer) else { throw CommandError(command: "ADD_DEV", errno: .invalidArgument) }
        return granted
    }

    public func info(_ device: UInt32) throws -> UblkABI.DeviceInfo {
        var buffer = [UInt8](repeating: 0, count: UblkABI.DeviceInfo.size)
        try send("GET_DEV_INFO", UblkABI.getDeviceInfo, device: device, buffer: &buffer)
        guard let info = UblkABI.DeviceInfo(buffer) else { throw CommandError(command: "GET_DEV_INFO", errno: .invalidArgument) }
        return info
    }

    public func setParameters(_ device: UInt32, _ parameters: UblkABI.Parameters) throws {
        var buffer = parameters.bytes
        try send("SET_PARAMS", UblkABI.setParameters, device: device, buffer: &buffer)
    }

    /// START_DEV: /dev/ublkbN appears; `server` is the process serving it.
    public func start(_ device: UInt32, server: Int32) throws {
        try send("START_DEV", UblkABI.startDevice, device: device, data0: UInt64(server))
    }

    /// START_USER_RECOVERY: EBUSY while the last server's /dev/ublkcN is
    /// still open or its queues are not quiesced yet.
    public func startRecovery(_ device: UInt32) throws {
        try send("START_USER_RECOVERY", UblkABI.startUserRecovery, device: device)
    }

    public func endRecovery(_ device: UInt32, server: Int32) throws {
        try send("END_USER_RECOVERY", UblkABI.endUserRecovery, device: device, data0: UInt64(server))
    }

    public func stop(_ device: UInt32) throws {
        try send("STOP_DEV", UblkABI.stopDevice, device: device)
    }

    /// DEL_DEV without waiting for the last opener to go.
    public func delete(_ device: UInt32) throws {
        try send("DEL_DEV_ASYNC", UblkABI.deleteDeviceAsync, device: device)
    }

    /// /dev/ublkcN, the server's side of device `device`.
    public static func serverPath(_ device: UInt32) -> String { "/dev/ublkc\(device)" }
    /// /dev/ublkbN, the disk.
    public static func diskName(_ device: UInt32) -> String { "ublkb\(device)" }
}
