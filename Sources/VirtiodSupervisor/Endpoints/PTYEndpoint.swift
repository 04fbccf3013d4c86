import FoundationEssentials
import Glibc
import SystemPackage
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol

/// Endpoint `pty`: every port of a console device (virtio 1.2 §5.3) as a
/// pseudo-terminal on this machine. Ports come and go while the device runs
/// (multiport PORT_ADD / PORT_REMOVE, §5.3.6.2), so terminals are made on
/// the plugin's request (`endpoint` open/close messages), one per port id,
/// and the supervisor keeps each master — a closed master takes /dev/pts/N
/// with it — in systemd's fd store beside the device's other fds. The plugin
/// gets duplicates: at attach every existing one (`facts["ports"]` lists
/// the port ids in fd order), later each new one attached to its answer.
///
/// Users find a port by stable names under `directory`: always
/// `<address>-port<id>`, and the port's own name (PORT_NAME) when the
/// device gives one — as /dev/virtio-ports/NAME for the kernel's driver.
/// Ports are raw terminals (binary-clean), the console port a cooked one
/// (for a getty).
///
/// A process opening the slave cannot be seen from the master until data
/// moves, so the supervisor watches each /dev/pts/N with inotify and tells
/// the plugin (`activity`), which then looks at the master: POLLHUP means
/// nobody has the terminal open (PseudoTerminal.hasReader).
final class PTYEndpoint: Endpoint {
    static let kind = "pty"
    static let directory = "/run/virtiod/ports"
    /// Most ports served per device (port ids 0 ..< maxPorts).
    static let maxPorts = 64
    static let stateSize = 64 << 10
    /// A master hangs up whenever nobody has its terminal open: systemd must keep it anyway (FDPOLL=0).
    static let storeWithPolling = false

    struct Port: Codable, Equatable {
        var key: Int
        var name: String?
        var console: Bool
        /// N of /dev/pts/N.
        var number: Int
    }

    let address: String
    private var masters: [Int: FileDescriptor]
    private(set) var ports: [Int: Port]
    private let state: EndpointState
    private let inotify: Inotify?
    private var watches: [Int32: Int] = [:]

    private init(address: String, ports: [Int: Port], masters: [Int: FileDescriptor], state: EndpointState) {
        self.address = address
        self.ports = ports
        self.masters = masters
        self.state = state
        var watcher: Inotify?
        do { watcher = try Inotify() } catch {
            Log.warning("pty: no inotify (\(error)): a process opening a port is noticed only when data moves", device: address)
        }
        inotify = watcher
        for p in ports.values.sorted(by: { $0.key < $1.key }) { attach(p) }
    }

    /// multiport: max_nr_ports (config u32 at 4, §5.3.4), at most `maxPorts`; else the one console port.
    static func plannedQueues(_ transport: VirtioPCITransport, offered: UInt64) -> Int {
        guard offered & ConsoleFeatures.multiport.rawValue != 0, transport.configSize >= 8,
              let n = try? transport.readConfig(UInt32.self, at: 4) else { return 1 }
        return max(1, min(maxPorts, Int(n)))
    }

    static func create(for device: ClaimedDevice, rule: DeviceRule?) throws -> PTYEndpoint {
        let e = PTYEndpoint(address: device.address, ports: [:], masters: [:],
                            state: try EndpointState(name: "virtiod-pty", size: stateSize))
        e.persist()
        return e
    }

    static func restore(for device: ClaimedDevice, fds: [FileDescriptor], state: FileDescriptor?) throws -> PTYEndpoint {
        guard let state else { throw ClaimError.setup("no pty state in the fd store") }
        let memory = try EndpointState(adopting: state, size: stateSize)
        guard let saved = memory.load([Port].self) else {
            throw ClaimError.setup("the pty state in the fd store is unreadable")
        }
        guard saved.count == fds.count else {
            throw ClaimError.setup("the pty state names \(saved.count) port(s), the fd store holds \(fds.count) terminal(s)")
        }
        var masters: [Int: FileDescriptor] = [:], ports: [Int: Port] = [:]
        for (p, fd) in zip(saved.sorted { $0.key < $1.key }, fds) {
            guard let t = try? PseudoTerminal(adopting: fd), t.number == p.number else {
                throw ClaimError.setup("the stored terminal of port \(p.key) is not /dev/pts/\(p.number)")
            }
            masters[p.key] = fd
            ports[p.key] = p
        }
        return PTYEndpoint(address: device.address, ports: ports, masters: masters, state: memory)
    }

    private var sorted: [Port] { ports.values.sorted { $0.key < $1.key } }
    var fds: [FileDescriptor] { sorted.map { masters[$0.key]! } }
    var stateFD: FileDescriptor? { state.fd }
    var facts: [String: String] { ["ports": sorted.map { String($0.key) }.joined(separator: " "), "directory": Self.directory] }
    var summary: String {
        ports.isEmpty ? "no port yet" : sorted.map { links(of: $0).last! }.joined(separator: " ")
    }
    var details: [String: String] {
        var d = ["directory": Self.directory, "ports": String(ports.count)]
        for p in sorted {
            d["port.\(p.key)"] = "/dev/pts/\(p.number)" + (p.console ? " (console)" : "")
                + " " + links(of: p).joined(separator: " ")
        }
        return d
    }

    // MARK: ports

    func request(_ event: EndpointEvent, _ device: ClaimedDevice) -> (answer: EndpointEvent?, fd: FileDescriptor?) {
        let key = event.key
        func failed(_ why: String) -> (EndpointEvent?, FileDescriptor?) {
            Log.warning("pty: port \(key): \(why)", device: address)
            return (EndpointEvent(kind: Self.kind, action: .failed, key: key, facts: ["error": why]), nil)
        }
        guard (0..<Self.maxPorts).contains(key) else { return failed("port ids go up to \(Self.maxPorts - 1)") }
        switch event.action {
        case .open:
            let name = event.facts["name"].flatMap(Self.linkName)
            let console = event.facts["console"] == "yes"
            if var p = ports[key] {
                if p.console != console, let master = masters[key] {
                    do { try PseudoTerminal.setMode(master, raw: !console) } catch {
                        Log.warning("pty: port \(key): \(error)", device: address)
                    }
                }
                if p.name != name || p.console != console {
                    removeLinks(p)
                    p.name = name
                    p.console = console
                    ports[key] = p
                    makeLinks(p)
                    persist()
                }
                return (opened(p), masters[key])
            }
            let t: PseudoTerminal
            do { t = try PseudoTerminal.open(raw: !console) } catch { return failed("no terminal: \(error)") }
            let p = Port(key: key, name: name, console: console, number: t.number)
            ports[key] = p
            masters[key] = t.master
            attach(p)
            persist()
            Log.info("port \(key): \(t.path)" + (console ? " (console)" : "") + ", " + links(of: p).joined(separator: " "), device: address)
            return (opened(p), t.master)
        case .close:
            guard let p = ports.removeValue(forKey: key) else { return (nil, nil) }
            detach(p)
            try? masters.removeValue(forKey: key)?.close()
            persist()
            Log.info("port \(key) removed: /dev/pts/\(p.number) closed", device: address)
            return (nil, nil)
        default:
            return failed("unexpected \(event.action) from the plugin")
        }
    }

    private func opened(_ p: Port) -> EndpointEvent {
        EndpointEvent(kind: Self.kind, action: .opened, key: p.key,
                      facts: ["fd": "attached", "tty": "/dev/pts/\(p.number)", "links": links(of: p).joined(separator: " ")])
    }

    var eventFD: FileDescriptor? { inotify?.fd }

    func drainEvents() -> [EndpointEvent] {
        guard let inotify else { return [] }
        let keys = Set(inotify.drain().compactMap { watches[$0] })
        return keys.sorted().map { EndpointEvent(kind: Self.kind, action: .activity, key: $0) }
    }

    func close() {
        for p in ports.values { detach(p) }
        for fd in masters.values { try? fd.close() }
        masters = [:]
        ports = [:]
        inotify?.close()
    }

    /// Links and the open watch for a port (made, or taken back after a restart).
    private func attach(_ p: Port) {
        makeLinks(p)
        if let inotify {
            do { watches[try inotify.watch("/dev/pts/\(p.number)", events: Inotify.opened)] = p.key } catch {
                Log.warning("pty: \(error): opening port \(p.key) is noticed only when data moves", device: address)
            }
        }
    }

    private func detach(_ p: Port) {
        removeLinks(p)
        if let (wd, _) = watches.first(where: { $0.value == p.key }) {
            inotify?.unwatch(wd)
            watches[wd] = nil
        }
    }

    // MARK: names under /run/virtiod/ports

    /// A port name as a file name: printable ASCII without '/', not "." or
    /// "..", at most 200 bytes (names come from the device).
    static func linkName(_ name: String) -> String? {
        let trimmed = String(name.prefix { $0 != "\0" })
        guard !trimmed.isEmpty, trimmed.utf8.count <= 200, trimmed != ".", trimmed != "..",
              trimmed.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") }) else { return nil }
        return trimmed
    }

    /// The port's link paths: by address and id, then by name.
    func links(of p: Port) -> [String] {
        ["\(Self.directory)/\(address)-port\(p.key)"] + (p.name.map { ["\(Self.directory)/\($0)"] } ?? [])
    }

    private func makeLinks(_ p: Port) {
        mkdir("/run/virtiod", 0o755)
        mkdir(Self.directory, 0o755)
        let target = "/dev/pts/\(p.number)"
        for (i, link) in links(of: p).enumerated() {
            if let existing = Self.readLink(link) {
                if existing == target { continue }
                // A name link another device's live port holds stays its (the address link is ours alone).
                if i > 0, access(existing, F_OK) == 0 {
                    Log.warning("pty: \(link) already names \(existing) (another device's port?); port \(p.key) keeps only its address link",
                                device: address)
                    continue
                }
                unlink(link)
            }
            if symlink(target, link) != 0 {
                Log.warning("pty: cannot make \(link): \(Errno(rawValue: errno))", device: address)
            }
        }
    }

    private func removeLinks(_ p: Port) {
        for link in links(of: p) where Self.readLink(link) == "/dev/pts/\(p.number)" { unlink(link) }
    }

    static func readLink(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }

    // MARK: the record a restart of virtiod reads

    private func persist() {
        do { try state.store(sorted) } catch {
            Log.warning("pty: port table for a restart of virtiod not kept: \(error)", device: address)
        }
    }
}
