import FoundationEssentials
import SystemPackage
import VirtioCore
import VirtiodProtocol

/// The part of a plugin that moves data: what a stub does not have. The
/// driver owns the device, queues and interrupts and calls in here from its
/// single event loop; a data path owns its buffers and kernel-facing fds.
public protocol DataPath: AnyObject {
    /// After DRIVER_OK: post buffers, set up the kernel-facing side.
    func start(_ driver: DeviceDriver) throws
    /// Extra fds the event loop polls for readability (e.g. the TAP fd).
    var pollFDs: [FileDescriptor] { get }
    /// One of `pollFDs` is readable.
    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws
    /// Fds with output waiting, polled for writability (default: none).
    var writeFDs: [FileDescriptor] { get }
    /// One of `writeFDs` can take more.
    func writable(_ fd: FileDescriptor, _ driver: DeviceDriver) throws
    /// Fds watched only for a hang-up (e.g. a terminal open here while its
    /// data is not wanted); `ready` is called when one hangs up (default: none).
    var hangupFDs: [FileDescriptor] { get }
    /// An interrupt for queue `index` (or an INTx that may be for any queue).
    func interrupt(queue index: Int, _ driver: DeviceDriver) throws
    /// The device config was re-read after a config-change interrupt.
    func configChanged(_ driver: DeviceDriver)
    /// An `endpoint` message from the supervisor: a part the plugin asked
    /// for, with its fd (the data path owns it from here), or activity on
    /// one (default: the fd is closed).
    func endpointEvent(_ event: EndpointEvent, fd: FileDescriptor?, _ driver: DeviceDriver) throws
    /// Per-queue counters for the report, by queue index.
    func counters(queue index: Int) -> [String: UInt64]
    /// Data-path facts for the report's config section (e.g. the interface).
    var facts: [String: ConfigValue] { get }

    // Hand-over (hot reload, restart of virtiod): docs/architecture.md.

    /// The layout version of what `saveState` writes.
    var stateVersion: Int { get }
    /// Stop moving data: finish what the device already returned; afterwards
    /// nothing touches the queues until `resume` (roll-back) or exit.
    func quiesce(_ driver: DeviceDriver) throws
    /// Buffer ownership and counters, for the successor.
    func saveState() throws -> Data
    /// Instead of `start`: continue from a predecessor's state (its queues
    /// are already restored in `driver.queues`). Throws, touching nothing,
    /// if the state is of an unknown version or does not fit.
    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws
    /// After `resume` succeeded everywhere: pick up what arrived during the pause.
    func continueAfterHandover(_ driver: DeviceDriver) throws
    /// Encode and decode a state of the real shape once, on throwaway
    /// values, touching nothing (`HandoverRehearsal`): the take-over then
    /// does not pay for running that code the first time (default: nothing).
    func rehearseState()
}

extension DataPath {
    public var writeFDs: [FileDescriptor] { [] }
    public var hangupFDs: [FileDescriptor] { [] }
    public func writable(_ fd: FileDescriptor, _ driver: DeviceDriver) throws {}
    public func endpointEvent(_ event: EndpointEvent, fd: FileDescriptor?, _ driver: DeviceDriver) throws { try? fd?.close() }
    public func rehearseState() {}
}

/// Makes a plugin's data path once the device is attached.
public typealias DataPathFactory = @Sendable (AttachedDevice) throws -> any DataPath
