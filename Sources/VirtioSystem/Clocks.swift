import Glibc

/// Seconds since the Unix epoch (for timestamps people read).
public func wallClock() -> Double { seconds(CLOCK_REALTIME) }

/// Seconds on a clock that never jumps (for timeouts and intervals).
public func monotonic() -> Double { seconds(CLOCK_MONOTONIC) }

/// A duration in seconds as milliseconds with one decimal, for log lines ("12.3 ms").
public func milliseconds(_ seconds: Double) -> String { "\((seconds * 10_000).rounded() / 10) ms" }

private func seconds(_ clock: clockid_t) -> Double {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
