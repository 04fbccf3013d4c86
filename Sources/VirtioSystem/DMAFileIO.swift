import Glibc
import SystemPackage
import VirtioCore

/// Reads and writes between a non-blocking fd (a terminal's master) and
/// DMA memory, without a copy in between.
public enum DMAFileIO {
    public enum Outcome: Equatable, Sendable {
        /// This many bytes moved (never 0).
        case moved(Int)
        /// Nothing now (EAGAIN): poll and try again.
        case wouldBlock
        /// The other side is gone: end of file, EIO (a terminal nobody has
        /// open) or a hang-up.
        case closed
    }

    /// Read what is waiting into `slice` (at most its length).
    public static func read(_ fd: FileDescriptor, into region: DMARegion, _ slice: DMASlice) throws -> Outcome {
        guard slice.length > 0 else { return .wouldBlock }
        while true {
            // SAFETY: `region.pointer` checks the slice lies in the mapping;
            // read(2) writes at most `slice.length` bytes there.
            let n = Glibc.read(fd.rawValue, region.pointer(slice), slice.length)
            if n > 0 { return .moved(n) }
            if n == 0 { return .closed }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            case EIO: return .closed
            default: throw SystemCallError("read")
            }
        }
    }

    /// Write what the fd takes now of `slice`.
    public static func write(_ fd: FileDescriptor, from region: DMARegion, _ slice: DMASlice) throws -> Outcome {
        guard slice.length > 0 else { return .moved(0) }
        while true {
            // SAFETY: as in `read`; write(2) only reads the slice.
            let n = Glibc.write(fd.rawValue, region.pointer(slice), slice.length)
            if n > 0 { return .moved(n) }
            if n == 0 { return .wouldBlock }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            case EIO, EPIPE: return .closed
            default: throw SystemCallError("write")
            }
        }
    }
}
