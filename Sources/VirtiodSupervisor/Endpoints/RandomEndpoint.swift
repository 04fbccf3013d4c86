import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem

/// Endpoint `random`: the kernel's random pool, as /dev/random opened for
/// writing. What a plugin writes there is mixed into the pool (random(4));
/// it is not credited as entropy, which would take CAP_SYS_ADMIN
/// (RNDADDENTROPY) no plugin has. For entropy devices (virtio 1.2 §5.4).
final class RandomEndpoint: Endpoint {
    static let kind = "random"
    static let path = "/dev/random"

    let fd: FileDescriptor
    private init(fd: FileDescriptor) { self.fd = fd }

    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64) -> Int { 1 }

    static func create(for device: ClaimedDevice, rule: DeviceRule?) throws -> RandomEndpoint {
        RandomEndpoint(fd: try FileDescriptor.open(path, .writeOnly, options: [.closeOnExec, .nonBlocking]))
    }

    static func restore(for device: ClaimedDevice, fds: [FileDescriptor], state: FileDescriptor?) throws -> RandomEndpoint {
        guard fds.count == 1 else { throw ClaimError.setup("expected one \(kind) fd in the fd store, found \(fds.count)") }
        return RandomEndpoint(fd: fds[0])
    }

    var fds: [FileDescriptor] { [fd] }
    var facts: [String: String] { ["path": Self.path] }
    var summary: String { Self.path }
    func close() { try? fd.close() }
}
