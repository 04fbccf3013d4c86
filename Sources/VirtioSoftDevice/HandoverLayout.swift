import VirtioCore

/// The fixed memory plan the hand-over test and its probe processes share:
/// a state area, one queue, then one 16-byte buffer per sequence slot.
public enum HandoverLayout {
    public static let regionSize = 1 << 20
    public static let deviceBase: UInt64 = 0x7_0000_0000
    public static let queueSize = 16
    public static let stateArea = DMASlice(offset: 0, length: 64 << 10)
    public static let queueArea = DMASlice(offset: 64 << 10, length: 64 << 10)
    public static let buffers = DMASlice(offset: 128 << 10, length: 64 << 10)
    public static func buffer(_ seq: Int) -> DMASlice { DMASlice(offset: buffers.offset + 16 * (seq % 64), length: 16) }
}
