import FoundationEssentials
import Glibc
import VirtiodProtocol

/// Terminal output: tables like `networkctl list`, colour only on a terminal
/// (and never with NO_COLOR set).
enum Output {
    nonisolated(unsafe) static var colour: Bool = isatty(1) == 1 && getenv("NO_COLOR") == nil

    static func paint(_ s: String, _ code: String) -> String { colour ? "\u{1b}[\(code)m\(s)\u{1b}[0m" : s }

    static func state(_ s: DeviceState) -> String {
        switch s {
        case .running: paint(s.rawValue, "32")
        case .failed, .refused: paint(s.rawValue, "31")
        case .claiming, .starting, .stopping: paint(s.rawValue, "33")
        case .unclaimed: s.rawValue
        case .unloaded: paint(s.rawValue, "33")
        }
    }

    /// The bullet `networkctl status` starts a link with, in the state's colour.
    static func dot(_ s: DeviceState) -> String {
        switch s {
        case .running: paint("●", "32")
        case .failed, .refused: paint("●", "31")
        case .claiming, .starting, .stopping, .unloaded: paint("●", "33")
        case .unclaimed: "●"
        }
    }

    /// Left-aligned columns two spaces apart; widths ignore colour codes.
    static func table(header: [String], rows: [[String]]) {
        func width(_ s: String) -> Int {
            var n = 0, inEscape = false
            for c in s.unicodeScalars {
                if c == "\u{1b}" { inEscape = true } else if inEscape { if c == "m" { inEscape = false } } else { n += 1 }
            }
            return n
        }
        let all = [header.map { colour ? "\u{1b}[1m\($0)\u{1b}[0m" : $0 }] + rows
        let widths = header.indices.map { i in all.map { width($0[i]) }.max() ?? 0 }
        for row in all {
            print(row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - width(cell))
            }.joined(separator: "  "))
        }
    }

    static func json<T: Encodable>(_ value: T) {
        if let data = try? ControlWire.prettyEncoder.encode(value) { print(String(decoding: data, as: UTF8.self)) }
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)min \(s % 60)s" }
        return "\(s / 3600)h \(s % 3600 / 60)min"
    }
}
