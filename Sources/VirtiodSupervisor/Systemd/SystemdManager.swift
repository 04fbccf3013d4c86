import CSystemd
import Glibc

/// A value of a unit property in a StartTransientUnit call, with its D-Bus
/// signature (org.freedesktop.systemd1(5)).
enum UnitValue {
    case string(String)
    case bool(Bool)
    case u64(UInt64)
    case u32(UInt32)
    case i32(Int32)
    case strings([String])
    /// A file descriptor (systemd takes its own duplicate).
    case fd(CInt)
    /// ExecStart= `a(sasb)`: one command, path and argv, failure not ignored.
    case exec(path: String, argv: [String])
    /// `(bas)`: an allow list (true) or deny list (false) — SystemCallFilter=, RestrictAddressFamilies=.
    case list(allow: Bool, [String])
    /// `aay`: LogExtraFields=.
    case byteStrings([String])
    /// `a(iayu)`: IPAddressDeny=/IPAddressAllow= prefixes (family, address bytes, prefix length).
    case addresses([(family: Int32, address: [UInt8], prefix: UInt32)])
}

struct BusError: Error, CustomStringConvertible {
    let description: String
    /// The D-Bus error name (e.g. org.freedesktop.systemd1.UnitExists), if any.
    let name: String?
}

/// The calls virtiod makes to systemd's manager (org.freedesktop.systemd1),
/// over the manager's private socket: it needs no D-Bus daemon (minimal
/// systems have none) and answers root only. The connection is opened on
/// first use and again after an error.
///
/// sd-bus's typed calls (`sd_bus_message_append_basic`, containers) are
/// used directly; only its variadic helpers are not callable from Swift.
///
/// systemd sends every signal (UnitNew, JobRemoved, PropertiesChanged…) to
/// every private connection, subscribed or not, and sd-bus queues what it
/// reads while waiting for a reply: `drain()` drops them, after each call
/// and from the supervisor's loop, or they pile up in memory.
final class SystemdManager {
    private var bus: OpaquePointer?

    private static let destination = "org.freedesktop.systemd1"
    private static let path = "/org/freedesktop/systemd1"
    private static let manager = "org.freedesktop.systemd1.Manager"

    /// Whether this process can talk to systemd as a manager client (root, systemd running).
    static var available: Bool { access("/run/systemd/private", F_OK) == 0 && geteuid() == 0 }

    private func connection() throws -> OpaquePointer {
        if let bus { return bus }
        var b: OpaquePointer?
        var r = sd_bus_new(&b)
        if r >= 0 { r = sd_bus_set_address(b, "unix:path=/run/systemd/private") }
        if r >= 0 { r = sd_bus_start(b) }
        guard r >= 0, let b else {
            if let b { sd_bus_flush_close_unref(b) }
            throw BusError(description: "cannot connect to systemd (/run/systemd/private): \(String(cString: strerror(-r)))", name: nil)
        }
        bus = b
        return b
    }

    /// Drop the signals systemd sent us (nothing here subscribes to them).
    func drain() {
        guard let bus else { return }
        var n = 0
        while n < 10_000 {
            let r = sd_bus_process(bus, nil)
            if r < 0 { drop(); return }
            if r == 0 { return }
            n += 1
        }
    }

    private func drop() {
        if let bus { sd_bus_flush_close_unref(bus) }
        bus = nil
    }

    /// Call a manager method whose arguments `fill` appends; the reply, which the caller unrefs.
    private func call(_ member: String, timeoutUSec: UInt64 = 10_000_000,
                      _ fill: (OpaquePointer) throws -> Void) throws -> OpaquePointer {
        let bus = try connection()
        var m: OpaquePointer?
        try check(sd_bus_message_new_method_call(bus, &m, Self.destination, Self.path, Self.manager, member), member)
        defer { sd_bus_message_unref(m) }
        try fill(m!)
        var error = sd_bus_error(name: nil, message: nil, _need_free: 0)
        defer { sd_bus_error_free(&error) }
        var reply: OpaquePointer?
        let r = sd_bus_call(bus, m, timeoutUSec, &error, &reply)
        drain()
        guard r >= 0, let reply else {
            let name = error.name.map { String(cString: $0) }
            let text = error.message.map { String(cString: $0) } ?? String(cString: strerror(-r))
            if name == nil { drop() } // a transport error: reconnect next time
            throw BusError(description: "\(member): \(text)", name: name)
        }
        return reply
    }

    private func check(_ r: CInt, _ what: String) throws {
        guard r >= 0 else { throw BusError(description: "\(what): \(String(cString: strerror(-r)))", name: nil) }
    }

    // MARK: appending typed values

    // SAFETY (all appends below): each pointer handed to sd-bus lives for
    // the duration of the call (withCString / withUnsafePointer /
    // withUnsafeBytes), and sd_bus_message_append_basic/_array copy what
    // they read into the message before returning; `T` is only ever a
    // plain integer of the width the D-Bus type letter says.

    private func append(_ m: OpaquePointer, _ s: String) throws {
        try s.withCString { p in try check(sd_bus_message_append_basic(m, CChar(UInt8(ascii: "s")), p), "append") }
    }

    private func appendBasic<T>(_ m: OpaquePointer, _ type: Character, _ value: T) throws {
        var v = value
        try withUnsafePointer(to: &v) { p in
            try check(sd_bus_message_append_basic(m, CChar(type.asciiValue!), UnsafeRawPointer(p)), "append")
        }
    }

    private func open(_ m: OpaquePointer, _ type: Character, _ contents: String, _ body: () throws -> Void) throws {
        try check(sd_bus_message_open_container(m, CChar(type.asciiValue!), contents), "open container")
        try body()
        try check(sd_bus_message_close_container(m), "close container")
    }

    private func appendStrings(_ m: OpaquePointer, _ list: [String]) throws {
        try open(m, "a", "s") { for s in list { try append(m, s) } }
    }

    private func append(_ m: OpaquePointer, _ value: UnitValue) throws {
        switch value {
        case .string(let s): try open(m, "v", "s") { try append(m, s) }
        case .bool(let b): try open(m, "v", "b") { try appendBasic(m, "b", CInt(b ? 1 : 0)) }
        case .u64(let n): try open(m, "v", "t") { try appendBasic(m, "t", n) }
        case .u32(let n): try open(m, "v", "u") { try appendBasic(m, "u", n) }
        case .i32(let n): try open(m, "v", "i") { try appendBasic(m, "i", n) }
        case .strings(let l): try open(m, "v", "as") { try appendStrings(m, l) }
        case .fd(let fd): try open(m, "v", "h") { try appendBasic(m, "h", fd) }
        case .exec(let path, let argv):
            try open(m, "v", "a(sasb)") {
                try open(m, "a", "(sasb)") {
                    try open(m, "r", "sasb") {
                        try append(m, path)
                        try appendStrings(m, argv)
                        try appendBasic(m, "b", CInt(0))
                    }
                }
            }
        case .list(let allow, let l):
            try open(m, "v", "(bas)") {
                try open(m, "r", "bas") {
                    try appendBasic(m, "b", CInt(allow ? 1 : 0))
                    try appendStrings(m, l)
                }
            }
        case .byteStrings(let l):
            try open(m, "v", "aay") {
                try open(m, "a", "ay") {
                    for s in l {
                        let bytes = Array(s.utf8)
                        try bytes.withUnsafeBytes { b in
                            try check(sd_bus_message_append_array(m, CChar(UInt8(ascii: "y")), b.baseAddress, b.count), "append")
                        }
                    }
                }
            }
        case .addresses(let l):
            try open(m, "v", "a(iayu)") {
                try open(m, "a", "(iayu)") {
                    for a in l {
                        try open(m, "r", "iayu") {
                            try appendBasic(m, "i", a.family)
                            try a.address.withUnsafeBytes { b in
                                try check(sd_bus_message_append_array(m, CChar(UInt8(ascii: "y")), b.baseAddress, b.count), "append")
                            }
                            try appendBasic(m, "u", a.prefix)
                        }
                    }
                }
            }
        }
    }

    // MARK: manager calls

    /// StartTransientUnit(name, "fail", properties, []): the unit is queued
    /// for start; throws (name UnitExists) if a unit of that name is loaded.
    func startTransientUnit(_ name: String, properties: [(String, UnitValue)]) throws {
        let reply = try call("StartTransientUnit") { m in
            try append(m, name)
            try append(m, "fail")
            try open(m, "a", "(sv)") {
                for (key, value) in properties {
                    try open(m, "r", "sv") {
                        try append(m, key)
                        try append(m, value)
                    }
                }
            }
            try open(m, "a", "(sa(sv))") {}
        }
        sd_bus_message_unref(reply)
    }

    /// The unit a process belongs to (GetUnitByPID → its Id), nil if none.
    func unit(ofPID pid: pid_t) -> String? {
        guard let reply = try? call("GetUnitByPID", { m in try appendBasic(m, "u", UInt32(pid)) }) else { return nil }
        defer { sd_bus_message_unref(reply) }
        // SAFETY: the string read points into `reply`, which is unref'd (defer)
        // only after it is copied into a String.
        var path: UnsafePointer<CChar>?
        guard sd_bus_message_read_basic(reply, CChar(UInt8(ascii: "o")), &path) >= 0, let path else { return nil }
        return unitProperty(objectPath: String(cString: path), interface: "org.freedesktop.systemd1.Unit", "Id")
    }

    /// KillUnit(name, "all", signal).
    func kill(unit: String, signal: CInt) throws {
        let reply = try call("KillUnit") { m in
            try append(m, unit)
            try append(m, "all")
            try appendBasic(m, "i", Int32(signal))
        }
        sd_bus_message_unref(reply)
    }

    /// ResetFailedUnit(name): a failed transient unit goes away.
    func resetFailed(unit: String) {
        if let reply = try? call("ResetFailedUnit", { m in try append(m, unit) }) { sd_bus_message_unref(reply) }
    }

    /// How a (failed) unit's main process ended, as systemctl status says it:
    /// e.g. "exited with status 1", "killed by signal 9"; nil if unknown.
    func exitDescription(unit: String) -> String? {
        guard let reply = try? call("GetUnit", { m in try append(m, unit) }) else { return nil }
        defer { sd_bus_message_unref(reply) }
        // SAFETY: as in `unit(ofPID:)`: copied before `reply` goes.
        var p: UnsafePointer<CChar>?
        guard sd_bus_message_read_basic(reply, CChar(UInt8(ascii: "o")), &p) >= 0, let p else { return nil }
        let path = String(cString: p)
        let service = "org.freedesktop.systemd1.Service"
        guard let bus = try? connection() else { return nil }
        var code: Int32 = 0, status: Int32 = 0
        var error = sd_bus_error(name: nil, message: nil, _need_free: 0)
        defer { sd_bus_error_free(&error) }
        guard sd_bus_get_property_trivial(bus, Self.destination, path, service, "ExecMainCode", &error, CChar(UInt8(ascii: "i")), &code) >= 0,
              sd_bus_get_property_trivial(bus, Self.destination, path, service, "ExecMainStatus", &error, CChar(UInt8(ascii: "i")), &status) >= 0
        else { return nil }
        // siginfo codes: CLD_EXITED 1, CLD_KILLED 2, CLD_DUMPED 3.
        switch code {
        case 1: return "exited with status \(status)"
        case 2, 3: return "killed by signal \(status)" + (code == 3 ? " (core dumped)" : "")
        default:
            return unitProperty(objectPath: path, interface: service, "Result").map { "unit result \($0)" }
        }
    }

    /// A service unit's main process, nil if it has none (not running) or is unknown.
    func mainPID(unit: String) -> pid_t? {
        guard let reply = try? call("GetUnit", { m in try append(m, unit) }) else { return nil }
        defer { sd_bus_message_unref(reply) }
        // SAFETY: as in `unit(ofPID:)`: copied before `reply` goes.
        var p: UnsafePointer<CChar>?
        guard sd_bus_message_read_basic(reply, CChar(UInt8(ascii: "o")), &p) >= 0, let p else { return nil }
        guard let bus = try? connection() else { return nil }
        var pid: UInt32 = 0
        var error = sd_bus_error(name: nil, message: nil, _need_free: 0)
        defer { sd_bus_error_free(&error) }
        guard sd_bus_get_property_trivial(bus, Self.destination, String(cString: p), "org.freedesktop.systemd1.Service", "MainPID",
                                          &error, CChar(UInt8(ascii: "u")), &pid) >= 0, pid > 0 else { return nil }
        return pid_t(pid)
    }

    private func unitProperty(objectPath: String, interface: String, _ name: String) -> String? {
        guard let bus = try? connection() else { return nil }
        var error = sd_bus_error(name: nil, message: nil, _need_free: 0)
        defer { sd_bus_error_free(&error) }
        var out: UnsafeMutablePointer<CChar>?
        guard sd_bus_get_property_string(bus, Self.destination, objectPath, interface, name, &error, &out) >= 0, let out else {
            return nil
        }
        defer { free(out) }
        return String(cString: out)
    }
}
