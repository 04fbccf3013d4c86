import ArgumentParser
import Glibc
import VirtioSystem
import VirtiodProtocol

/// `virtioctl metrics`: Prometheus text exposition of every device
/// (MetricsExposition), on stdout or written atomically for the node
/// exporter's textfile collector (virtiod-metrics.timer does that).
struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Prometheus metrics (text exposition) for every device, or write them to a .prom file.",
        discussion: """
            When virtiod is not running the output is still valid: virtiod_up 0 and no device series, \
            and the exit status is 0, so a timer writing the file keeps it current.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: "Write to this file atomically (a temporary file renamed over it) instead of stdout.")
    var output: String?

    func run() throws {
        let text: String
        do {
            text = MetricsExposition.render(devices: try global.request(.status).devices ?? [])
        } catch CLIError.notRunning(let why) {
            FileHandleShim.stderr("virtioctl: \(why)\n")
            text = MetricsExposition.render(devices: [], up: false)
        } catch {
            global.fail(error)
        }
        guard let output else { return print(text, terminator: "") }
        do { try TextFile.writeAtomically(text, to: output) } catch {
            global.fail(.failed("cannot write \(output): \(error)"))
        }
    }
}
