/// One value of a device's configuration space, as reports show it.
public enum ConfigValue: Sendable, Hashable, Codable, CustomStringConvertible {
    case number(UInt64)
    case text(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(UInt64.self) { self = .number(n) } else { self = .text(try c.decode(String.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .number(let n): try c.encode(n)
        case .text(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .number(let n): String(n)
        case .text(let s): s
        }
    }
}
