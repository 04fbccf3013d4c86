import SystemPackage
import VirtioCore
import VirtioPCI
import VirtiodProtocol

/// A kernel-facing endpoint of a claimed device: what the rest of the system
/// sees of it (a TAP interface, a block device, a PTY, a mount…). The
/// supervisor makes it, because making it takes privileges no plugin has,
/// and holds its fds — parked in systemd's fd store with the device's other
/// fds — so it outlives plugin restarts, reloads and restarts of virtiod.
/// Plugins get duplicates by name (`<kind>.<index>`) with `facts` beside them.
///
/// A manifest's `Endpoints=` names kinds; each kind is one type here, listed
/// in `EndpointKinds.all`. Adding one is the only change a new plugin may
/// need outside its own folder.
protocol Endpoint: AnyObject {
    /// The kind as manifests name it ("tap").
    static var kind: String { get }
    /// How many queues the endpoint will have for this device (a TAP queue
    /// per queue pair…), known before the DMA memory is sized; 1 when the
    /// notion does not apply.
    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64) -> Int
    /// Make it for a device just claimed (config rule for names and options).
    static func create(for device: ClaimedDevice, rule: DeviceRule?) throws -> Self
    /// Take it back from the fd store after a restart of virtiod, touching
    /// nothing. Throws without taking any fd; on success owns `fds`.
    static func restore(for device: ClaimedDevice, fds: [FileDescriptor]) throws -> Self

    /// Its fds, in index order (named `<kind>.<index>` for the plugin and the store).
    var fds: [FileDescriptor] { get }
    /// What the plugin is told beside the fds.
    var facts: [String: String] { get }
    /// What users see of it (`vtnet0`, `/dev/nbd0`…), for status and logs.
    var summary: String { get }
    /// udev finished with network interface `name` (a TAP may need its MAC again).
    func interfaceAppeared(_ name: String)
    /// Close every fd (the endpoint disappears with the last one).
    func close()
}

extension Endpoint {
    func interfaceAppeared(_ name: String) {}

    var info: EndpointInfo {
        EndpointInfo(kind: Self.kind, fds: fds.indices.map { FDName.endpoint(Self.kind, $0) }, facts: facts)
    }
}

/// Every endpoint kind virtiod can make.
enum EndpointKinds {
    static var all: [any Endpoint.Type] { [TAPEndpoint.self, RandomEndpoint.self] }

    static func named(_ kind: String) -> (any Endpoint.Type)? { all.first { $0.kind == kind } }
    static var names: [String] { all.map { $0.kind } }
}
