import Foundation
import Synchronization
import VirtioCore

/// Serves a `SoftDevice` from a thread of its own, as real hardware would:
/// notifications wake it, it services the notified queues, and interrupts go
/// back through `SoftDevice.onInterrupt`. `stop()` joins the thread.
public final class SoftDeviceRunner: Sendable {
    private let device: SoftDevice
    private let pending = Mutex<(queues: Set<Int>, stopped: Bool)>(([], false))
    private let wake = NSCondition()
    private let done = DispatchSemaphore(value: 0)

    public init(device: SoftDevice) {
        self.device = device
        device.onNotify = { [weak self] q in self?.notify(q) }
        let thread = Thread { [self] in run() }
        thread.name = "soft-device"
        thread.start()
    }

    private func notify(_ q: Int) {
        wake.lock()
        _ = pending.withLock { $0.queues.insert(q) }
        wake.signal()
        wake.unlock()
    }

    private func run() {
        while true {
            wake.lock()
            var work = pending.withLock { p in defer { p.queues = [] }; return (p.queues, p.stopped) }
            while work.0.isEmpty && !work.1 {
                wake.wait()
                work = pending.withLock { p in defer { p.queues = [] }; return (p.queues, p.stopped) }
            }
            wake.unlock()
            for q in work.0.sorted() { device.serve(q) }
            if work.1 { break }
        }
        done.signal()
    }

    public func stop() {
        wake.lock()
        pending.withLock { $0.stopped = true }
        wake.signal()
        wake.unlock()
        done.wait()
        device.onNotify = nil
    }
}
