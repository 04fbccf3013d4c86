import FoundationEssentials
import Glibc
import VirtioSystem
import VirtiodProtocol

/// One request to virtiod's control socket and its response.
enum ControlClient {
    static func call(_ request: ControlRequest, socket path: String) throws(CLIError) -> ControlResponse {
        let socket: UnixSocket
        do { socket = try UnixSocket.connect(path: path) } catch {
            if let e = error as? SystemCallError, e.errno == .permissionDenied || e.errno == .notPermitted {
                throw CLIError.permissionDenied("permission denied on \(path): virtioctl needs root or membership in the "
                                                + "virtiod group (usermod -aG virtiod USER)")
            }
            let why = (error as? SystemCallError).map { "\($0.errno)" } ?? "\(error)"
            throw CLIError.notRunning("virtiod is not running (cannot connect to \(path): \(why)). "
                                      + "Start it with: systemctl start virtiod")
        }
        defer { socket.close() }
        do {
            var line = try ControlWire.encoder.encode(request)
            line.append(UInt8(ascii: "\n"))
            try socket.writeAll(Array(line))
            let reply = try socket.readLine()
            guard !reply.isEmpty else { throw CLIError.failed("virtiod closed the connection without an answer") }
            return try ControlWire.decoder.decode(ControlResponse.self, from: Data(reply))
        } catch let e as CLIError {
            throw e
        } catch {
            throw CLIError.failed("talking to virtiod at \(path): \(error)")
        }
    }
}

/// Failures and the exit codes they map to (documented in `virtioctl --help`).
enum CLIError: Error, CustomStringConvertible {
    case failed(String)          // 1
    case notRunning(String)      // 3
    case noSuchDevice(String)    // 4
    case permissionDenied(String) // 5
    case refused(String)         // 6

    var description: String {
        switch self {
        case .failed(let s), .notRunning(let s), .noSuchDevice(let s), .permissionDenied(let s), .refused(let s): s
        }
    }

    var exitCode: Int32 {
        switch self {
        case .failed: 1
        case .notRunning: 3
        case .noSuchDevice: 4
        case .permissionDenied: 5
        case .refused: 6
        }
    }

    init(_ e: ControlError) {
        switch e.code {
        case .noSuchDevice: self = .noSuchDevice(e.message)
        case .permissionDenied: self = .permissionDenied(e.message)
        case .refused: self = .refused(e.message)
        default: self = .failed(e.message)
        }
    }
}
