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
    /// nothing. Throws without taking any fd; on success owns `fds` and
    /// `state` (the `stateFD` stored, if it has one).
    static func restore(for device: ClaimedDevice, fds: [FileDescriptor], state: FileDescriptor?) throws -> Self

    /// Whether this machine can make the kind (its kernel module is there);
    /// a manifest naming alternatives (`Endpoints=ublk|nbd`) gets the first
    /// available one (default true).
    static var available: Bool { get }
    /// Whether an fd `request` returns stays the endpoint's (default true)
    /// or is the plugin's alone: closed here once sent (ublk's server side,
    /// which the kernel lets only one process hold open).
    static var requestedFDsStay: Bool { get }
    /// Why the kind cannot serve a device claimed in vfio's no-IOMMU mode,
    /// or nil if it can (default nil).
    static var unavailableWithoutIOMMU: String? { get }
    /// Whether systemd may drop a stored fd of this kind when it reports a
    /// hang-up (default true; false for terminals, whose masters hang up
    /// whenever nobody has them open).
    static var storeWithPolling: Bool { get }
    /// Its fds, in index order (named `<kind>.<index>` for the plugin and the store).
    var fds: [FileDescriptor] { get }
    /// What the plugin is told beside the fds.
    var facts: [String: String] { get }
    /// What users see of it (`vtnet0`, `/dev/nbd0`…), for status and logs.
    var summary: String { get }
    /// Its name among the machine's interfaces and disks (`vtnet0`, `nbd0`), if it has one.
    var name: String? { get }
    /// Facts for `virtioctl status` (size, connections…).
    var details: [String: String] { get }
    /// A memfd of the supervisor's own (never given to plugins) holding what
    /// a restart of virtiod needs to find the endpoint again; stored beside its fds.
    var stateFD: FileDescriptor? { get }
    /// The plugin sent a report (its config, with what identify requests learnt).
    func deviceReported(_ device: ClaimedDevice, config: [String: ConfigValue])
    /// A plugin is about to start on the reset device (not taking over from
    /// a hand-over record): whatever an earlier plugin read from the
    /// endpoint and never answered is lost, so renew what must be. True if
    /// `fds` changed (the fd store is then updated).
    func beforeFreshPlugin(_ device: ClaimedDevice) throws -> Bool
    /// udev finished with network interface `name` (a TAP may need its MAC again).
    func interfaceAppeared(_ name: String)
    /// A plugin's `endpoint` message, for kinds whose parts come and go while
    /// the device runs (a console's ports): the answer for the plugin and the
    /// fd to attach to it. `fds` may change (the caller updates the fd store).
    func request(_ event: EndpointEvent, _ device: ClaimedDevice) -> (answer: EndpointEvent?, fd: FileDescriptor?)
    /// An fd the supervisor polls for the endpoint's own events (inotify).
    var eventFD: FileDescriptor? { get }
    /// `eventFD` is readable: what to tell the plugin.
    func drainEvents() -> [EndpointEvent]
    /// Close every fd (the endpoint disappears with the last one).
    func close()
}

extension Endpoint {
    static var available: Bool { true }
    static var requestedFDsStay: Bool { true }
    static var unavailableWithoutIOMMU: String? { nil }
    static var storeWithPolling: Bool { true }
    func interfaceAppeared(_ name: String) {}
    var name: String? { nil }
    var details: [String: String] { facts }
    var stateFD: FileDescriptor? { nil }
    func deviceReported(_ device: ClaimedDevice, config: [String: ConfigValue]) {}
    func beforeFreshPlugin(_ device: ClaimedDevice) throws -> Bool { false }
    func request(_ event: EndpointEvent, _ device: ClaimedDevice) -> (answer: EndpointEvent?, fd: FileDescriptor?) {
        (EndpointEvent(kind: Self.kind, action: .failed, key: event.key,
                       facts: ["error": "the \(Self.kind) endpoint has no parts to open or close"]), nil)
    }
    var eventFD: FileDescriptor? { nil }
    func drainEvents() -> [EndpointEvent] { [] }

    var report: EndpointReport { EndpointReport(kind: Self.kind, summary: summary, name: name, details: details) }

    var info: EndpointInfo {
        EndpointInfo(kind: Self.kind, fds: fds.indices.map { FDName.endpoint(Self.kind, $0) }, facts: facts)
    }
}

/// Every endpoint kind virtiod can make.
enum EndpointKinds {
    static var all: [any Endpoint.Type] {
        [TAPEndpoint.self, NBDEndpoint.self, UblkEndpoint.self, RandomEndpoint.self, PTYEndpoint.self, BalloonEndpoint.self, FUSEEndpoint.self]
    }

    static func named(_ kind: String) -> (any Endpoint.Type)? { all.first { $0.kind == kind } }
    static var names: [String] { all.map { $0.kind } }

    /// The kind a manifest entry stands for: itself, or for alternatives
    /// (`ublk|nbd`) the one the device's `Endpoint=` names, else the first
    /// this machine can make, else the last.
    static func choose(_ entry: String, preferred: String?) throws(ClaimError) -> any Endpoint.Type {
        let alternatives = entry.split(separator: "|").map(String.init)
        let kinds = alternatives.compactMap(named)
        guard kinds.count == alternatives.count, let last = kinds.last else {
            throw .setup("the manifest names an endpoint this virtiod does not make (\(entry))")
        }
        if let preferred, kinds.count > 1 {
            guard let kind = kinds.first(where: { $0.kind == preferred }) else {
                throw .refused("Endpoint=\(preferred) is not one the plugin offers (\(alternatives.joined(separator: ", ")))")
            }
            return kind
        }
        return kinds.first(where: { $0.available }) ?? last
    }
}
