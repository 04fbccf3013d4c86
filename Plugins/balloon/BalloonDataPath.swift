import FoundationEssentials
import SystemPackage
import VirtioCore
import VirtiodPluginRuntime
import VirtiodProtocol

/// The balloon's data path (virtio 1.2 §5.5): inflateq and deflateq
/// (BalloonInflater, with the supervisor's `balloon` endpoint) and the
/// stats queue (BalloonStatsQueue) on one event loop.
final class BalloonDataPath: DataPath {
    let endpoint: AttachedEndpoint
    let holdOff: Double
    var inflater: BalloonInflater?
    var stats: BalloonStatsQueue?

    init(device: AttachedDevice) throws {
        endpoint = try device.endpoint("balloon")
        holdOff = try BalloonPolicy.holdOff(options: device.info.options)
    }

    /// Both set up from the negotiated features and queue plan (start or resume).
    private func setUp(_ driver: DeviceDriver) throws {
        guard inflater == nil else { return }
        func position(_ name: String) -> Int? { driver.queues.firstIndex { $0.name == name } }
        guard let i = position("inflateq"), let d = position("deflateq") else {
            throw PluginError("balloon: inflateq and deflateq are not set up")
        }
        inflater = try BalloonInflater(inflate: i, deflate: d, endpoint: endpoint,
                                       deflateOnOOM: driver.negotiated & BalloonFeatures.deflateOnOOM.rawValue != 0, holdOff: holdOff)
        if driver.negotiated & BalloonFeatures.statsVirtqueue.rawValue != 0, let s = position("statsq") {
            stats = BalloonStatsQueue(position: s)
        }
    }

    func start(_ driver: DeviceDriver) throws {
        try setUp(driver)
        try stats?.start(driver)
        try inflater?.start(driver)
    }

    var pollFDs: [FileDescriptor] { inflater?.pollFDs ?? [] }
    func ready(_ fd: FileDescriptor, _ driver: DeviceDriver) throws { try inflater?.ready(fd, driver) }

    func interrupt(queue index: Int, _ driver: DeviceDriver) throws {
        if index == stats?.position { try stats?.interrupt(driver) }
        if index == inflater?.inflatePosition || index == inflater?.deflatePosition { try inflater?.interrupt(queue: index, driver) }
    }

    func configChanged(_ driver: DeviceDriver) { inflater?.configChanged(driver) }

    func endpointEvent(_ event: EndpointEvent, fd: FileDescriptor?, _ driver: DeviceDriver) throws {
        try? fd?.close()
        try inflater?.endpointEvent(event, driver)
    }

    func counters(queue index: Int) -> [String: UInt64] {
        if index == stats?.position { return stats?.counters ?? [:] }
        if index == inflater?.inflatePosition, let c = inflater?.counters { return c }
        return [:]
    }

    var facts: [String: ConfigValue] {
        var f = inflater?.facts ?? [:]
        f["stats"] = .text(stats == nil ? "not negotiated" : "served from /proc/meminfo, /proc/vmstat")
        return f
    }

    // MARK: hand-over

    struct Saved: Codable {
        var stats: BalloonStatsQueue.Saved?
        var inflater: BalloonInflater.Saved?
    }

    var stateVersion: Int { 2 }
    func quiesce(_ driver: DeviceDriver) throws {}

    func saveState() throws -> Data {
        try JSONEncoder().encode(Saved(stats: stats?.saved, inflater: inflater?.saved))
    }

    func resume(_ driver: DeviceDriver, state: Data, version: Int) throws {
        guard version == 2 else { throw PluginError("balloon state version \(version) unknown (this plugin reads 2)") }
        let saved = try JSONDecoder().decode(Saved.self, from: state)
        try setUp(driver)
        guard (saved.stats == nil) == (stats == nil), let inflaterState = saved.inflater else {
            throw PluginError("the record and the device disagree about the balloon's queues")
        }
        if let s = saved.stats { try stats?.resume(driver, s) }
        try inflater?.resume(driver, inflaterState)
    }

    func continueAfterHandover(_ driver: DeviceDriver) throws {
        try stats?.continueAfterHandover(driver)
        try inflater?.continueAfterHandover(driver)
    }
}
