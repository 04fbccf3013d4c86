import ArgumentParser
import Glibc
import VirtioSystem
import VirtiodProtocol

/// `virtioctl wait`: block until devices reach a state, so scripts need not
/// poll `status` (claims and plugin starts run after `systemctl start`
/// returns). One process polls the control socket every 100 ms.
struct Wait: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until devices reach a state (default: running); without devices, until none is in transition.",
        discussion: """
            With devices: exits 0 once every one is in the state (--json: prints their reports); 1 on timeout or when one is refused \
            (it says where each stands and why); 4 if one does not exist. Without devices: exits 0 once \
            no device is claiming, starting or stopping. While virtiod is not reachable (it is \
            restarting) the wait goes on; at the timeout that is the error (exit 3).
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "PCI addresses (or unique suffixes).")
    var devices: [String] = []
    @Option(help: "The state to wait for (with devices; default running): running, unloaded, unclaimed, failed, refused.")
    var state: String?
    @Option(help: "Give up after this many seconds.")
    var timeout: Double = 60

    func validate() throws {
        if let state {
            guard !devices.isEmpty else { throw ValidationError("--state needs devices to wait for") }
            guard let s = DeviceState(rawValue: state), ![.claiming, .starting, .stopping].contains(s) else {
                throw ValidationError("--state: one of running, unloaded, unclaimed, failed, refused (got '\(state)')")
            }
        }
        guard timeout >= 0, timeout <= 86_400 else { throw ValidationError("--timeout: seconds from 0 to 86400") }
    }

    func run() throws {
        let want = state.flatMap(DeviceState.init(rawValue:)) ?? .running
        let deadline = monotonic() + timeout
        while true {
            let outcome = poll(want)
            switch outcome {
            case .done(let reports):
                if global.json { Output.json(reports) }
                return
            case .failed(let e): global.fail(e)
            case .waiting(let why):
                if monotonic() >= deadline { global.fail(why) }
            }
            usleep(100_000)
        }
    }

    enum Outcome {
        /// With the reports that showed it (printed with --json).
        case done([DeviceReport])
        case waiting(CLIError)
        case failed(CLIError)
    }

    /// One look at the devices: done, a reason to keep waiting, or a reason to stop.
    func poll(_ want: DeviceState) -> Outcome {
        var reports: [DeviceReport] = []
        do throws(CLIError) {
            if devices.isEmpty {
                reports = try global.request(.list).devices ?? []
            } else {
                for d in devices { reports += try global.request(.status, device: d).devices ?? [] }
            }
        } catch {
            if case .notRunning = error { return .waiting(error) }
            return .failed(error)
        }
        if devices.isEmpty {
            let busy = reports.filter { [.claiming, .starting, .stopping].contains($0.state) }
            return busy.isEmpty ? .done(reports) : .waiting(.failed("still in transition after \(Int(timeout)) s: "
                + busy.map { "\($0.address) \($0.state.rawValue)" }.joined(separator: ", ")))
        }
        if reports.allSatisfy({ $0.state == want }) { return .done(reports) }
        let standing = reports.filter { $0.state != want }
            .map { "\($0.address) is \($0.state.rawValue)" + ($0.reason.map { " (\($0))" } ?? "") }
            .joined(separator: "; ")
        if want != .refused, reports.contains(where: { $0.state == .refused }) {
            return .failed(.failed("not \(want.rawValue): \(standing)"))
        }
        return .waiting(.failed("not \(want.rawValue) after \(Int(timeout)) s: \(standing)"))
    }

}
