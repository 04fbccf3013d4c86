import VirtioCore

/// A helper for reading a device-specific config layout (virtio 1.2 §5.x.4)
/// into report fields: each read goes through `Transport.readConfig`
/// (generation-checked), only if the field lies inside the config space, and
/// only when the feature that makes it valid was negotiated (the caller
/// checks `has`). Values the device states are reported, never used as sizes.
public struct ConfigFields {
    public let transport: any Transport
    public let negotiated: UInt64
    public private(set) var values: [String: ConfigValue] = [:]

    public init(_ transport: any Transport, negotiated: UInt64) {
        self.transport = transport
        self.negotiated = negotiated
    }

    /// Whether every bit of `feature` was negotiated.
    public func has(_ feature: UInt64) -> Bool { negotiated & feature == feature }

    /// A little-endian integer field at `offset`, if the config space holds it.
    public mutating func number<T: FixedWidthInteger>(_ name: String, _: T.Type, at offset: Int) throws {
        guard offset >= 0, offset + MemoryLayout<T>.size <= transport.configSize else { return }
        values[name] = .number(UInt64(try transport.readConfig(T.self, at: offset)))
    }

    public mutating func set(_ name: String, _ value: ConfigValue) { values[name] = value }

    public subscript(name: String) -> ConfigValue? { values[name] }
}
