import FoundationEssentials
import SystemPackage
import VirtioCore
import VirtioSystem

/// An endpoint's memfd of its own (never given to plugins): what a restart
/// of virtiod needs to find the endpoint again, as JSON in a `StateArea`
/// (word 1 once written). Stored in systemd's fd store beside the
/// endpoint's fds (`Endpoint.stateFD`).
struct EndpointState {
    let memory: SharedMemory

    /// A new one, empty.
    init(name: String, size: Int = 4096) throws { memory = try SharedMemory(name: name, size: size) }
    /// One taken back from the fd store (owns `fd` from here).
    init(adopting fd: FileDescriptor, size: Int = 4096) throws { memory = try SharedMemory(mapping: fd, size: size, ownsFD: true) }

    var fd: FileDescriptor { memory.fd }

    private var area: StateArea { StateArea(region: memory.region(deviceBase: 0), slice: DMASlice(offset: 0, length: memory.size)) }

    func store<T: Encodable>(_ value: T) throws {
        try area.store(Array(try JSONEncoder().encode(value)), word: 1)
    }

    /// What was stored last; nil if nothing was, or it does not decode as `T`.
    func load<T: Decodable>(_: T.Type) -> T? {
        guard let (record, word) = try? area.load(), word == 1 else { return nil }
        return try? JSONDecoder().decode(T.self, from: Data(record))
    }
}
