import VirtioCore
import VirtioSystem
import VirtiodProtocol

/// One virtio function as the supervisor manages it.
final class ManagedDevice {
    var function: VirtioFunction
    var identity: DeviceIdentity
    var state: DeviceState = .unclaimed
    var reason: String?
    var rule: DeviceRule?
    var claimed: ClaimedDevice?
    var plugin: PluginProcess?
    /// During a hot reload: the job, the successor process (standby until it
    /// takes over) and, once it has, the old process on its way out.
    var reload: DeviceReload?
    var successor: PluginProcess?
    var retiring: PluginProcess?

    /// Every plugin process of the device the loop must follow.
    var processes: [PluginProcess] { [plugin, successor, retiring].compactMap { $0 } }
    /// Released by `virtioctl release`: not claimed again until claimed by hand or the config is reloaded.
    var heldBack = false
    /// A claim was tried under the current config (refusals are not retried on every udev event).
    var attempted = false

    init(function: VirtioFunction) {
        self.function = function
        identity = DeviceIdentity()
    }

    var address: String { function.address }
    var type: DeviceType? { function.typeID.flatMap { DeviceType(rawValue: $0) } }

    func report() -> DeviceReport {
        let endpoints = claimed?.endpoints ?? []
        let interfaces = function.interfaces + function.blockDevices + endpoints.compactMap(\.name)
        var r = DeviceReport(
            address: address, type: function.type ?? "type\(function.typeID.map(String.init) ?? "?")",
            deviceID: "1af4:" + String(function.deviceID, radix: 16), state: state, kernelDriver: function.driver,
            iommuGroup: function.iommuGroup, numaNode: function.numaNode, reason: reason, rule: rule?.origin,
            interfaces: interfaces, plugin: plugin?.processReport(now: monotonic()), driver: plugin?.report)
        r.endpoints = endpoints.map(\.report)
        r.dma = claimed.map { $0.noIOMMU ? "physical" : "iommu" }
        return r
    }
}
