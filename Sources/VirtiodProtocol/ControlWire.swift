import FoundationEssentials

/// JSON as every command prints it and the control socket carries it
/// (docs/control-protocol.md, "Naming"): snake_case keys, as the virtio
/// spec names config fields and as Prometheus names labels. The types keep
/// Swift's camelCase; the strategies convert at the edge, in this one place.
/// Dictionary keys (counters, device config) are data and pass unchanged —
/// plugins name them in snake_case too.
public enum ControlWire {
    /// One sorted object per line (the socket).
    public static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys]
        return e
    }

    /// The same keys, indented, for people and jq (`--json`).
    public static var prettyEncoder: JSONEncoder {
        let e = encoder
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return e
    }

    public static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .custom { path in SnakeCaseKey(camelCase(path.last!.stringValue)) }
        return d
    }

    /// Words the Swift names spell in capitals (`deviceID`,
    /// `lastReloadPauseMS`): `.convertFromSnakeCase` would make them
    /// `deviceId` and miss the property.
    static let acronyms: Set<Substring> = ["id", "ms", "fd"]

    /// `last_reload_pause_ms` → `lastReloadPauseMS`, the inverse of
    /// `.convertToSnakeCase` for the names these types use.
    public static func camelCase(_ key: String) -> String {
        let words = key.split(separator: "_", omittingEmptySubsequences: true)
        guard let first = words.first, words.count > 1 else { return key }
        return String(first) + words.dropFirst().map { acronyms.contains($0) ? $0.uppercased() : $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    struct SnakeCaseKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// A key in the style above: lowercase words joined by `_`.
    public static func isSnakeCase(_ key: String) -> Bool {
        !key.isEmpty && key.first!.isLetter
            && key.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}
