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

/// One `Key=Value` assignment with where it came from.
public struct INIAssignment: Sendable, Hashable {
    public let key: String
    public let value: String
    public let line: Int
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
    public static func parse(_ text: String, file: String) throws(ConfigError) -> [INISection] {
        var sections: [INISection] = []
        var pending = ""
        var pendingLine = 0
        // "\r\n" is one Character in Swift: split on it too (CRLF files).
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (i, raw) in lines.enumerated() {
            let number = i + 1
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
                    throw ConfigError(file: file, line: pendingLine, reason: "malformed section header '\(line)'")
                }
                sections.append(INISection(name: String(line.dropFirst().dropLast()).trimmingWhitespace(), line: pendingLine))
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw ConfigError(file: file, line: pendingLine, reason: "expected Key=Value or [Section], got '\(line)'")
            }
            let key = String(line[..<eq]).trimmingWhitespace()
            let value = String(line[line.index(after: eq)...]).trimmingWhitespace()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw ConfigError(file: file, line: pendingLine, reason: "invalid key '\(key)'")
            }
            guard !sections.isEmpty else {
                throw ConfigError(file: file, line: pendingLine, reason: "assignment '\(key)=' outside any section")
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
