import FoundationEssentials
import Glibc

/// A parse error that names the file and line, as systemd does.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let reason: String
    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }
    public var description: String { "\(file):\(line): \(reason)" }
}

/// A file and line.
public struct ConfigLocation: Sendable, Hashable {
    public let file: String
    public let line: Int
}

/// One `Key=Value` assignment with where it came from.
public struct INIAssignment: Sendable, Hashable {
    public let key: String
    public let value: String
    public let line: Int
    /// The value as error messages quote it: control characters escaped, cut short.
    public var shown: String { Log.quoted(value, limit: 80) }
}

/// One `[Section]` and its assignments, in file order.
public struct INISection: Sendable, Hashable {
    public let name: String
    public let line: Int
    public var assignments: [INIAssignment] = []
}

/// systemd-style INI (systemd.syntax(7)): `[Section]` headers, `Key=Value`
/// lines, `#` and `;` comments, blank lines, a trailing backslash continues a
/// line. Anything else is an error naming file and line.
public enum INIFile {
    /// Largest file read, and longest line accepted: a configuration is a
    /// few lines; anything bigger is a mistake, reported, not chewed on.
    public static let maxFileSize = 1 << 20
    public static let maxLineLength = 4096

    /// The text of `path`, refused (with the file named) when it is not a
    /// regular file or larger than `maxFileSize`.
    public static func read(_ path: String) throws(ConfigError) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ConfigError(file: path, line: 0, reason: "cannot read file: \(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw ConfigError(file: path, line: 0, reason: "not a regular file") }
        guard Int(st.st_size) <= maxFileSize else {
            throw ConfigError(file: path, line: 0, reason: "\(st.st_size) bytes: larger than \(maxFileSize >> 10) KiB, not read")
        }
        guard let data = FileManager.default.contents(atPath: path), data.count <= maxFileSize else {
            throw ConfigError(file: path, line: 0, reason: "cannot read file")
        }
        return String(decoding: data, as: UTF8.self)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> [INISection] {
        var sections: [INISection] = []
        var pending = ""
        var pendingLine = 0
        // "\r\n" is one Character in Swift: split on it too (CRLF files).
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (i, raw) in lines.enumerated() {
            let number = i + 1
            if let bad = raw.unicodeScalars.first(where: { ($0.value < 0x20 && $0 != "\t" && $0 != "\r") || (0x7f..<0xa0).contains($0.value) }) {
                throw ConfigError(file: file, line: number, reason: "control character U+\(String(bad.value, radix: 16, uppercase: true)) in "
                                  + "'\(Log.quoted(String(raw), limit: 60))'")
            }
            guard raw.utf8.count <= maxLineLength else {
                throw ConfigError(file: file, line: number, reason: "line of \(raw.utf8.count) bytes, longer than \(maxLineLength): "
                                  + "'\(Log.quoted(String(raw), limit: 40))'")
            }
            var line = String(raw).trimmingWhitespace()
            if pending.isEmpty && (line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";")) { continue }
            if line.hasSuffix("\\") {
                if pending.isEmpty { pendingLine = number }
                pending += String(line.dropLast()) + " "
                continue
            }
            if !pending.isEmpty {
                line = pending + line
                pending = ""
            } else {
                pendingLine = number
            }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]"), line.count > 2 else {
                    throw ConfigError(file: file, line: pendingLine, reason: "malformed section header '\(Log.quoted(line, limit: 80))'")
                }
                sections.append(INISection(name: String(line.dropFirst().dropLast()).trimmingWhitespace(), line: pendingLine))
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigError(file: file, line: pendingLine, reason: "expected Key=Value or [Section], got '\(Log.quoted(line, limit: 80))'")
            }
            let key = String(line[..<eq]).trimmingWhitespace()
            let value = String(line[line.index(after: eq)...]).trimmingWhitespace()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw ConfigError(file: file, line: pendingLine, reason: "invalid key '\(Log.quoted(key, limit: 80))'")
            }
            guard !sections.isEmpty else {
                throw ConfigError(file: file, line: pendingLine, reason: "assignment '\(Log.quoted(key, limit: 40))=' outside any section")
            }
            sections[sections.count - 1].assignments.append(INIAssignment(key: key, value: value, line: pendingLine))
        }
        if !pending.isEmpty {
            throw ConfigError(file: file, line: pendingLine, reason: "line continuation at end of file")
        }
        return sections
    }

    /// systemd's boolean spellings.
    public static func boolean(_ value: String) -> Bool? {
        switch value.lowercased() {
        case "1", "yes", "y", "true", "t", "on": true
        case "0", "no", "n", "false", "f", "off": false
        default: nil
        }
    }
}
