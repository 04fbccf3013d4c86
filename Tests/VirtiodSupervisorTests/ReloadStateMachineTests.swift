import Foundation
import Glibc
import SystemPackage
import Testing
import VirtioSystem
import VirtiodProtocol
@testable import VirtiodSupervisor

/// The hot-reload state machine (`DeviceReload`) without a device: both
/// plugin processes are played by the test over real socketpairs, the
/// launcher is a fake that records kills, the hand-over area a flag.
/// Every path a reload can take: success, the successor dying or refusing,
/// the old process not quiescing in time.
@Suite struct ReloadStateMachineTests {
    final class FakeLauncher: PluginLauncher {
        var killed: [String] = []
        func launch(_ p: PluginProcess, address: String, socket: UnixSocket) throws {}
        func owns(pid: pid_t, _ p: PluginProcess) -> Bool { true }
        func kill(_ p: PluginProcess) { killed.append("\(p.generation)") }
        func exitDescription(_ p: PluginProcess) -> String? { "exited with status 1" }
        func release(_ p: PluginProcess) {}
    }

    final class Rig {
        let launcher = FakeLauncher()
        let supervisor: Supervisor
        let device: ManagedDevice
        let old: PluginProcess, next: PluginProcess
        /// The plugins' ends of their sockets.
        let oldEnd: UnixSocket, nextEnd: UnixSocket
        let job: DeviceReload
        var saved = false

        init() throws {
            var o = SupervisorOptions()
            o.manifestDirectories = []
            supervisor = Supervisor(options: o, launcher: launcher)
            let f = VirtioFunction(address: "0000:00:03.0", vendor: "0x1af4", device: "0x1041", subsystemDevice: nil,
                                   driver: "vfio-pci", iommuGroup: 3, iommuGroupMembers: ["0000:00:03.0"], numaNode: nil)!
            device = ManagedDevice(function: f)
            let m = PluginManifest(name: "net", exec: "/x", deviceTypes: [1], path: "/x.plugin")
            old = PluginProcess(manifest: m)
            old.state = .running
            next = old.successor(manifest: m)
            let (a, b) = try UnixSocket.seqpacketPair()
            let (c, d) = try UnixSocket.seqpacketPair()
            old.socket = a; oldEnd = b
            next.socket = c; nextEnd = d
            device.plugin = old
            device.successor = next
            job = DeviceReload(device: device, old: old, next: next)
            device.reload = job
            supervisor.savedRecordOverride = { [unowned self] _ in self.saved }
        }

        /// What the supervisor sent to a plugin, by kind.
        func received(_ end: UnixSocket) -> [PluginMessage.Kind] {
            var kinds: [PluginMessage.Kind] = []
            while (try? Poll.readable([end.fd], timeoutMS: 0))?.isEmpty == false,
                  let bytes = try? end.receive().bytes, !bytes.isEmpty, let m = try? PluginMessage.decode(bytes) {
                kinds.append(m.kind)
            }
            return kinds
        }

        func say(_ kind: PluginMessage.Kind, from p: PluginProcess, _ text: String? = nil) {
            job.message(PluginMessage(kind: kind, status: nil, message: text), from: p, supervisor)
        }
    }

    @Test func aReloadThatWorksEndsWithTheSuccessorRunning() throws {
        let rig = try Rig()
        rig.say(.ready, from: rig.next)
        #expect(rig.received(rig.oldEnd) == [.quiesce] && rig.job.phase == .quiescing)
        rig.say(.quiesced, from: rig.old)
        #expect(rig.received(rig.nextEnd) == [.resume] && rig.job.phase == .resuming)
        rig.say(.status, from: rig.next)
        #expect(rig.job.result?.ok == true && rig.job.phase == .retiring)
        #expect(rig.device.plugin === rig.next && rig.next.reloads == 1 && rig.next.lastReloadPauseMS != nil)
        #expect(rig.received(rig.oldEnd) == [.exit])
        // The old process leaves; the job is done.
        rig.job.exited(rig.old, rig.supervisor)
        #expect(rig.job.phase == .finished && rig.device.reload == nil)
    }

    @Test func aSuccessorThatDiesBeforeReadyCostsNoPause() throws {
        let rig = try Rig()
        rig.job.exited(rig.next, rig.supervisor)
        #expect(rig.job.result?.ok == false && rig.job.result!.message.contains("failed before taking over"))
        #expect(rig.job.result!.message.contains("traffic was not paused"))
        #expect(rig.received(rig.oldEnd).isEmpty && rig.device.plugin === rig.old && rig.launcher.killed == ["1"])
    }

    @Test func aSuccessorThatRefusesTheRecordRollsBack() throws {
        let rig = try Rig()
        rig.say(.ready, from: rig.next)
        rig.say(.quiesced, from: rig.old)
        rig.saved = true
        rig.say(.error, from: rig.next, "state version 9 is newer than this plugin reads")
        #expect(rig.job.result?.ok == false && rig.job.result!.message.contains("refused the hand-over"))
        #expect(rig.received(rig.oldEnd) == [.quiesce, .resume])
        #expect(rig.device.plugin === rig.old && rig.device.reload == nil && rig.old.lastReload?.contains("refused") == true)
    }

    @Test func anOldProcessThatDoesNotQuiesceIsToldToResume() throws {
        let rig = try Rig()
        rig.say(.ready, from: rig.next)
        #expect(rig.job.phase == .quiescing)
        rig.job.step(rig.supervisor, now: monotonic() + 1)
        #expect(rig.job.result == nil)
        rig.job.step(rig.supervisor, now: monotonic() + DeviceReload.quiesceTimeout + 0.1)
        #expect(rig.job.result?.ok == false && rig.job.result!.message.contains("did not quiesce within 5 s"))
        // The device is never left paused: the old process gets resume after its quiesce.
        #expect(rig.received(rig.oldEnd) == [.quiesce, .resume])
        #expect(rig.launcher.killed == ["1"] && rig.device.plugin === rig.old && rig.device.successor == nil)
    }

    @Test func aSuccessorThatNeverGetsReadyIsGivenUp() throws {
        let rig = try Rig()
        rig.job.step(rig.supervisor, now: monotonic() + DeviceReload.readyTimeout + 0.1)
        #expect(rig.job.result?.ok == false && rig.job.result!.message.contains("did not get ready"))
        #expect(rig.received(rig.oldEnd).isEmpty)
    }
}

/// Restarts after failures: back-off doubling from 0.5 s, and the device's
/// RestartLimitBurst= within RestartLimitIntervalSec= ends them.
@Suite struct RestartBackoffTests {
    @Test func backOffDoublesAndTheLimitStopsRestarts() throws {
        var o = SupervisorOptions()
        o.manifestDirectories = []
        let s = Supervisor(options: o, launcher: ReloadStateMachineTests.FakeLauncher())
        let f = VirtioFunction(address: "0000:00:05.0", vendor: "0x1af4", device: "0x1043", subsystemDevice: nil,
                               driver: "vfio-pci", iommuGroup: 5, iommuGroupMembers: ["0000:00:05.0"], numaNode: nil)!
        let d = ManagedDevice(function: f)
        d.rule = try ClaimPolicy.parse("[Device]\nType=console\nClaim=yes\nRestartLimitBurst=3\nRestartLimitIntervalSec=60\n",
                                       file: "t.conf").first
        let p = PluginProcess(manifest: PluginManifest(name: "console", exec: "/x", deviceTypes: [3], path: "/x.plugin"))
        d.plugin = p
        var delays: [Double] = []
        for i in 1...3 {
            let before = monotonic()
            s.pluginFailed(d, why: "plugin killed by signal 9 (\(i))")
            if let at = p.restartAt { delays.append(((at - before) * 10).rounded() / 10) }
        }
        #expect(delays == [0.5, 1.0])
        #expect(p.restartAt == nil && d.state == .failed)
        #expect(d.reason?.contains("3 failures within 60 s (RestartLimitBurst=3)") == true)
        #expect(d.reason?.contains("virtioctl restart 0000:00:05.0") == true)
    }
}
