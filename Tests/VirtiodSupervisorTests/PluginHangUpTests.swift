import Foundation
import Testing
import VirtioSystem
import VirtiodProtocol
@testable import VirtiodSupervisor

/// A plugin's socket once it hung up: read to its end once, then never
/// polled or read again (a closed socket polls readable forever).
@Suite struct PluginHangUpTests {
    /// A device whose plugin was asked to stop (as `virtioctl release` does),
    /// talking over one end of a socket pair; the other end is the plugin's.
    func stoppingPlugin() throws -> (Supervisor, ManagedDevice, PluginProcess, UnixSocket) {
        var o = SupervisorOptions()
        o.manifestDirectories = [ManifestFixture.shared.directory]
        let s = Supervisor(options: o)
        s.loadManifests()
        let f = try #require(VirtioFunction(address: "0000:00:03.0", vendor: "0x1af4", device: "0x1042", subsystemDevice: nil,
                                            driver: "vfio-pci", iommuGroup: 3, iommuGroupMembers: ["0000:00:03.0"],
                                            numaNode: nil, interfaces: [], blockDevices: []))
        let d = ManagedDevice(function: f)
        let p = PluginProcess(manifest: try #require(s.catalog["alpha"]))
        let (mine, theirs) = try UnixSocket.seqpacketPair()
        p.socket = mine
        p.state = .stopping
        d.plugin = p
        d.state = .stopping
        return (s, d, p, theirs)
    }

    /// The regression: an exited plugin's last messages were read "while the
    /// socket is readable", and a stopping plugin's hang-up left it readable —
    /// virtiod spun until its watchdog killed it (seen releasing a disk while
    /// the balloon inflated). The read runs on its own thread here, so a
    /// regression fails the test instead of hanging it.
    @Test func lastMessagesStopAtTheHangUp() throws {
        let (s, d, p, theirs) = try stoppingPlugin()
        try theirs.send(PluginMessage(kind: .error, message: "last words").encoded())
        try theirs.send(PluginMessage(kind: .error, message: "more last words").encoded())
        theirs.close()
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let unchecked = (s, d, p)
        Thread.detachNewThread {
            unchecked.0.lastMessages(unchecked.1, from: unchecked.2)
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success, "reading an exited plugin's last messages did not end")
        #expect(p.hungUp)
        // Stopping: the hang-up is left to the stop (it still has its socket until it is forgotten).
        #expect(p.isRunning && d.plugin === p)
    }

    @Test func forgettingClearsTheHangUp() throws {
        let (s, _, p, theirs) = try stoppingPlugin()
        theirs.close()
        p.hungUp = true
        p.forget(launcher: s.launcher)
        #expect(!p.hungUp && !p.isRunning)
    }
}
