/// Heap storage for a value that one owner mutates on a hot path.
///
/// A `var` stored in a class is checked for exclusive access at run time on
/// every access (`swift_beginAccess`), which cost more than the ring work
/// itself in the round-trip benchmark. The rings keep their state here and
/// mutate it through `pointer`, which has no such check.
///
/// SAFETY: the pointer is allocated and initialised in init and deinitialised
/// and freed in deinit, never earlier; it never escapes the owning object;
/// owners (`Virtqueue`, `DeviceQueue`) are used by one thread at a time and
/// never hand out overlapping `inout` accesses to `pointee`.
public final class OwnedState<Value>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Value>

    public init(_ value: Value) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: value)
    }

    deinit {
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }
}
