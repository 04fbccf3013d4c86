/// /proc/meminfo (proc(5)), parsed once for everybody who reads it: the
/// balloon plugin's statistics and targets, the supervisor's balloon memory.
public struct MemInfo: Sendable, Equatable {
    /// Each field in bytes ("kB" lines) or as given (HugePages_Total…).
    public var values: [String: UInt64] = [:]

    public init(_ text: String) {
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == ":" })
            guard parts.count >= 2, let v = UInt64(parts[1]) else { continue }
            values[String(parts[0])] = parts.count >= 3 && parts[2] == "kB" ? v.multipliedReportingOverflow(by: 1024).partialValue : v
        }
    }

    /// The system's figures now; nil if /proc/meminfo cannot be read.
    public static func read(_ path: String = "/proc/meminfo") -> MemInfo? { TextFile.read(path).map(MemInfo.init) }

    public subscript(_ field: String) -> UInt64? { values[field] }
}
