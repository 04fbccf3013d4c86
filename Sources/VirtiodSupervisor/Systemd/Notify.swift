import CSystemd
import Glibc

/// The service manager notification protocol (sd_notify(3)): READY=1,
/// STATUS=, STOPPING=1, RELOADING=1, WATCHDOG=1. Without NOTIFY_SOCKET
/// (not run by systemd) every call is a no-op.
public enum ServiceNotifier {
    public static func send(_ state: String) {
        _ = sd_notify(0, state)
    }

    public static func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    public static func status(_ s: String) { send("STATUS=\(s)") }
    public static func stopping() { send("STOPPING=1\nSTATUS=Giving devices back to their kernel drivers") }
    public static func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let usec = UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
        send("RELOADING=1\nMONOTONIC_USEC=\(usec)")
    }
    public static func watchdog() { send("WATCHDOG=1") }

    /// The watchdog interval systemd expects pings within, if enabled.
    public static func watchdogInterval() -> Double? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return Double(usec) / 1_000_000
    }
}
