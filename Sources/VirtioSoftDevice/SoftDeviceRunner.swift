import Dispatch
import Synchronization
import VirtioCore

/// Serves a `SoftDevice` from a thread of its own, as real hardware would:
/// notifications wake it, it services the notified queues, and interrupts go
/// back through `SoftDevice.onInterrupt`. `stop()` waits for the thread.
public final class SoftDeviceRunner: Sendable {
    private let device: SoftDevice
    private let pending = Mutex<(queues: Set<Int>, stopped: Bool)>(([], false))
    private let wake = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)

    public init(device: SoftDevice) {
        self.device = device
        device.onNotify = { [weak self] q in self?.notify(q) }
        DispatchQueue(label: "soft-device").async { [self] in run() }
    }

    private func notify(_ q: Int) {
        _ = pending.withLock { $0.queues.insert(q) }
        wake.signal()
    }

    private func run() {
        while true {
            wake.wait()
            let (queues, stopped) = pending.withLock { p in
                defer { p.queues = [] }
                return (p.queues, p.stopped)
            }
            for q in queues.sorted() { device.serve(q) }
            if stopped { break }
        }
        done.signal()
    }

    public func stop() {
        pending.withLock { $0.stopped = true }
        wake.signal()
        done.wait()
        device.onNotify = nil
    }
}
