import CSystemd
import Glibc

/// An sd-device (udev) monitor for the pci subsystem, on its own sd-event
/// loop whose fd the supervisor polls with everything else: when the fd is
/// readable, `dispatch()` runs the loop once without blocking and returns
/// whether any pci device was added, removed, bound or unbound.
///
/// SAFETY: `event` and `monitor` are owned references released in deinit;
/// the C callback gets an unretained pointer to this object, which outlives
/// the monitor (the monitor is stopped and released first).
public final class DeviceMonitor {
    private var event: OpaquePointer?
    private var monitor: OpaquePointer?
    private var changed = false
    public private(set) var fd: Int32 = -1

    public init() throws {
        var e: OpaquePointer?
        var rc = sd_event_new(&e)
        guard rc >= 0, let e else { throw SystemdError(call: "sd_event_new", code: rc) }
        event = e
        var m: OpaquePointer?
        rc = sd_device_monitor_new(&m)
        guard rc >= 0, let m else { throw SystemdError(call: "sd_device_monitor_new", code: rc) }
        monitor = m
        rc = sd_device_monitor_filter_add_match_subsystem_devtype(m, "pci", nil)
        guard rc >= 0 else { throw SystemdError(call: "sd_device_monitor_filter_add_match_subsystem_devtype", code: rc) }
        rc = sd_device_monitor_attach_event(m, e)
        guard rc >= 0 else { throw SystemdError(call: "sd_device_monitor_attach_event", code: rc) }
        let me = Unmanaged.passUnretained(self).toOpaque()
        rc = sd_device_monitor_start(m, { _, _, userdata in
            guard let userdata else { return 0 }
            Unmanaged<DeviceMonitor>.fromOpaque(userdata).takeUnretainedValue().changed = true
            return 0
        }, me)
        guard rc >= 0 else { throw SystemdError(call: "sd_device_monitor_start", code: rc) }
        fd = sd_event_get_fd(e)
    }

    /// Handle what is pending; true if a pci device changed.
    public func dispatch() -> Bool {
        changed = false
        while let event, sd_event_run(event, 0) > 0 {}
        return changed
    }

    deinit {
        if let monitor {
            sd_device_monitor_stop(monitor)
            sd_device_monitor_unref(monitor)
        }
        if let event { sd_event_unref(event) }
    }
}
