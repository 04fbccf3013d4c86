/// A control message of a multiport console (virtio 1.2 §5.3.6.2):
///
///     struct virtio_console_control { le32 id; le16 event; le16 value; }
///
/// followed, for PORT_NAME, by the name and, for RESIZE, by
/// `struct virtio_console_resize { le16 cols; le16 rows; }`.
struct ConsoleControl: Codable, Equatable, Sendable {
    enum Event: UInt16, Codable, Sendable {
        case deviceReady = 0, deviceAdd = 1, deviceRemove = 2, portReady = 3, consolePort = 4
        case resize = 5, portOpen = 6, portName = 7
    }
    static let headerSize = 8
    /// Most bytes of a name kept (QEMU sends the name and a NUL).
    static let maxNameBytes = 255

    var id: UInt32
    var event: Event
    var value: UInt16
    var payload: [UInt8] = []

    init(id: UInt32, event: Event, value: UInt16, payload: [UInt8] = []) {
        self.id = id
        self.event = event
        self.value = value
        self.payload = payload
    }

    enum ParseError: Error, Equatable, CustomStringConvertible {
        case short(Int)
        case unknownEvent(UInt16)
        var description: String {
            switch self {
            case .short(let n): "control message of \(n) bytes (less than the 8-byte header)"
            case .unknownEvent(let e): "unknown control event \(e)"
            }
        }
    }

    /// Parse what the device wrote (its used length, checked by the queue, bounds `bytes`).
    init(parsing bytes: [UInt8]) throws(ParseError) {
        guard bytes.count >= Self.headerSize else { throw .short(bytes.count) }
        func le(_ at: Int, _ n: Int) -> UInt32 { (0..<n).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        guard let e = Event(rawValue: UInt16(le(4, 2))) else { throw .unknownEvent(UInt16(le(4, 2))) }
        id = le(0, 4)
        event = e
        value = UInt16(le(6, 2))
        payload = Array(bytes[Self.headerSize...])
    }

    var encoded: [UInt8] {
        var b: [UInt8] = []
        for i in 0..<4 { b.append(UInt8(truncatingIfNeeded: id >> (8 * i))) }
        for v in [event.rawValue, value] { b += [UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8)] }
        return b + payload
    }

    /// PORT_NAME's name: up to the first NUL, valid UTF-8 (else nil), at most `maxNameBytes`.
    var name: String? {
        let bytes = payload.prefix { $0 != 0 }.prefix(Self.maxNameBytes)
        guard !bytes.isEmpty else { return nil }
        return String(validating: Array(bytes), as: UTF8.self)
    }

    /// RESIZE's size (spec layout: cols first), nil if the payload is short.
    var size: (cols: UInt16, rows: UInt16)? {
        guard payload.count >= 4 else { return nil }
        return (UInt16(payload[0]) | UInt16(payload[1]) << 8, UInt16(payload[2]) | UInt16(payload[3]) << 8)
    }
}
