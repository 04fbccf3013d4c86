import VirtioCore

/// Bytes a reply carries: part of an array, or still in DMA memory where
/// the device wrote them — a 9P read's data goes to /dev/fuse from its slot,
/// never copied by the plugin.
enum MessageBytes {
    case array(ArraySlice<UInt8>)
    case dma(DMASlice)

    var count: Int {
        switch self {
        case .array(let b): b.count
        case .dma(let s): s.length
        }
    }
}
