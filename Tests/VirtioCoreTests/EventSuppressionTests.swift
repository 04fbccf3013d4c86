import Testing
import VirtioCore
import VirtioSoftDevice

/// Notification suppression: virtio 1.2 §2.7.7/§2.7.10 (split), §2.8.10 (packed).
@Suite struct EventSuppressionTests {
    @Test(arguments: [RingLayout.split, .packed])
    func withoutEventIndexTheDeviceFlagDecidesKicks(layout: RingLayout) throws {
        let f = try RingFixture(layout, size: 8)
        try f.addPair(token: 0)
        #expect(f.queue.publish())            // device wants notifications by default
        #expect(!f.queue.publish())           // nothing new: no kick
        f.device.setNotifications(enabled: false)
        try f.addPair(token: 1)
        #expect(!f.queue.publish())
        f.device.setNotifications(enabled: true)
        try f.addPair(token: 2)
        #expect(f.queue.publish())
    }

    @Test(arguments: [RingLayout.split, .packed])
    func eventIndexKicksOnlyWhenPassingTheDevicesEvent(layout: RingLayout) throws {
        let f = try RingFixture(layout, size: 8, eventIndex: true)
        f.device.setNotifications(enabled: true)  // event at position 0
        try f.addPair(token: 0)
        #expect(f.queue.publish())                // 0 → 1 passes event 0
        try f.addPair(token: 1)
        #expect(!f.queue.publish())               // device has not consumed: event still 0
        var c = DeviceChain()
        #expect(f.device.pop(into: &c) && f.device.pop(into: &c)) // device consumed both: event = 2
        f.device.setNotifications(enabled: true)
        try f.addPair(token: 2)
        #expect(f.queue.publish())
        // Across many wraps the decision stays right: device keeps up, every publish kicks.
        f.deviceCompleteAll()
        _ = try f.drainUsed()
        for t in 0..<200 {
            try f.addPair(token: t % 8)
            #expect(f.queue.publish(), "publish \(t)")
            _ = f.deviceCompleteAll()
            f.device.setNotifications(enabled: true)
            _ = try f.drainUsed()
        }
    }

    @Test(arguments: [RingLayout.split, .packed])
    func eventIndexDeviceCanTurnNotificationsOff(layout: RingLayout) throws {
        let f = try RingFixture(layout, size: 8, eventIndex: true)
        f.device.setNotifications(enabled: false)
        var c = DeviceChain()
        for t in 0..<20 {   // the device keeps polling: no kick, however far the ring moves
            try f.addPair(token: t % 8)
            #expect(!f.queue.publish(), "kick \(t) while the device polls")
            #expect(f.device.pop(into: &c))
            f.device.push(c, length: 0)
            _ = f.device.commit()
            _ = try f.drainUsed()
        }
        f.device.setNotifications(enabled: true)
        try f.addPair(token: 0)
        #expect(f.queue.publish())
    }

    @Test(arguments: [RingLayout.split, .packed])
    func driverInterruptSuppression(layout: RingLayout) throws {
        for eventIndex in [false, true] {
            let f = try RingFixture(layout, size: 8, eventIndex: eventIndex)
            _ = f.queue.enableInterrupts()
            try f.addPair(token: 0)
            _ = f.queue.publish()
            var c = DeviceChain()
            #expect(f.device.pop(into: &c))
            f.device.push(c, length: 0)
            #expect(f.device.commit(), "eventIndex \(eventIndex): interrupt wanted")
            f.queue.disableInterrupts()
            _ = try f.drainUsed()
            try f.addPair(token: 1)
            _ = f.queue.publish()
            #expect(f.device.pop(into: &c))
            f.device.push(c, length: 0)
            if !eventIndex { #expect(!f.device.commit(), "interrupts disabled") } else { _ = f.device.commit() }
            // Re-enabling reports the used buffer that arrived meanwhile.
            #expect(f.queue.enableInterrupts())
            _ = try f.drainUsed()
            #expect(!f.queue.enableInterrupts())
            try f.addPair(token: 2)
            _ = f.queue.publish()
            #expect(f.device.pop(into: &c))
            f.device.push(c, length: 0)
            #expect(f.device.commit())
        }
    }

    @Test(arguments: [RingLayout.split, .packed])
    func eventIndexBatchesInterrupts(layout: RingLayout) throws {
        // Driver enables interrupts at used position 0; the device completes
        // 3 chains in one go: one interrupt, not three; a later commit with
        // nothing new asks for none.
        let f = try RingFixture(layout, size: 8, eventIndex: true)
        _ = f.queue.enableInterrupts()
        for t in 0..<3 { try f.addPair(token: t) }
        _ = f.queue.publish()
        var c = DeviceChain()
        var interrupts = 0
        while f.device.pop(into: &c) { f.device.push(c, length: 0) }
        if f.device.commit() { interrupts += 1 }
        if f.device.commit() { interrupts += 1 }
        #expect(interrupts == 1)
    }
}
