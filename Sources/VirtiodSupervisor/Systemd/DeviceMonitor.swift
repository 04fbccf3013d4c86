import CSystemd
import Glibc

/// An sd-device (udev) monitor for the pci and net subsystems, on its own
/// sd-event loop whose fd the supervisor polls with everything else: when
/// the fd is readable, `dispatch()` runs the loop once without blocking and
/// says whether any pci device changed and which network interfaces udev
/// has finished processing (it may have changed their MAC address).
///
/// SAFETY: `event` and `monitor` are owned references released in deinit;
/// the C callback gets an unretained pointer to this object, which outlives
/// the monitor (the monitor is stopped and released first).
public final class DeviceMonitor {
    private var event: OpaquePointer?
    private var monitor: OpaquePointer?
    private var changed = false
    private var interfaces: [String] = []
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
        for subsystem in ["pci", "net"] {
            rc = sd_device_monitor_filter_add_match_subsystem_devtype(m, subsystem, nil)
            guard rc >= 0 else { throw SystemdError(call: "sd_device_monitor_filter_add_match_subsystem_devtype", code: rc) }
        }
        rc = sd_device_monitor_attach_event(m, e)
        guard rc >= 0 else { throw SystemdError(call: "sd_device_monitor_attach_event", code: rc) }
        let me = Unmanaged.passUnretained(self).toOpaque()
        rc = sd_device_monitor_start(m, { _, device, userdata in
            guard let userdata, let device else { return 0 }
            let monitor = Unmanaged<DeviceMonitor>.fromOpaque(userdata).takeUnretainedValue()
            let d = SDDevice(borrowing: device)
            if d.subsystem == "net" { monitor.interfaces.append(d.sysname) } else { monitor.changed = true }
            return 0
        }, me)
        guard rc >= 0 else { throw SystemdError(call: "sd_device_monitor_start", code: rc) }
        fd = sd_event_get_fd(e)
    }

    /// Handle what is pending.
    public func dispatch() -> (pciChanged: Bool, interfaces: [String]) {
        changed = false
        interfaces = []
        while let event, sd_event_run(event, 0) > 0 {}
        return (changed, interfaces)
    }

    deinit {
        if let monitor {
            sd_device_monitor_stop(monitor)
            sd_device_monitor_unref(monitor)
        }
        if let event { sd_event_unref(event) }
    }
}
