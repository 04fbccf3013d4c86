import CSystemd
import Glibc

public struct SystemdError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let code: Int32
    public var description: String { "\(call): \(String(cString: strerror(-code)))" }
}

/// One device from libsystemd's sd-device (a udev device).
///
/// SAFETY: holds its own reference (`sd_device_ref`, released in deinit), so
/// the handle stays valid for the object's lifetime; strings returned by
/// sd-device are copied into Swift strings before the next call.
public final class SDDevice: @unchecked Sendable {
    let handle: OpaquePointer

    init(borrowing handle: OpaquePointer) {
        self.handle = sd_device_ref(handle)
    }

    deinit { sd_device_unref(handle) }

    private func string(_ get: (OpaquePointer, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> Int32) -> String? {
        var p: UnsafePointer<CChar>?
        guard get(handle, &p) >= 0, let p else { return nil }
        return String(cString: p)
    }

    public var syspath: String { string { sd_device_get_syspath($0, $1) } ?? "" }
    public var sysname: String { string { sd_device_get_sysname($0, $1) } ?? "" }
    public var subsystem: String? { string { sd_device_get_subsystem($0, $1) } }
    /// nil when no driver is bound.
    public var driver: String? { string { sd_device_get_driver($0, $1) } }

    public func attribute(_ name: String) -> String? {
        var p: UnsafePointer<CChar>?
        guard sd_device_get_sysattr_value(handle, name, &p) >= 0, let p else { return nil }
        return String(cString: p).trimmingWhitespace()
    }
}

/// sd-device enumeration with matches (`sd_device_enumerator_*`).
public struct SDDeviceQuery {
    public var subsystems: [String] = []
    public var attributes: [(String, String)] = []
    public var parent: SDDevice?
    /// Also return devices udev has not processed (no udev database entry),
    /// e.g. on a machine without systemd-udevd.
    public var includeUninitialized = false

    public init(subsystems: [String] = [], attributes: [(String, String)] = [], parent: SDDevice? = nil,
                includeUninitialized: Bool = false) {
        self.subsystems = subsystems
        self.attributes = attributes
        self.parent = parent
        self.includeUninitialized = includeUninitialized
    }

    public func devices() throws -> [SDDevice] {
        var e: OpaquePointer?
        var rc = sd_device_enumerator_new(&e)
        guard rc >= 0, let e else { throw SystemdError(call: "sd_device_enumerator_new", code: rc) }
        defer { sd_device_enumerator_unref(e) }
        for s in subsystems {
            rc = sd_device_enumerator_add_match_subsystem(e, s, 1)
            guard rc >= 0 else { throw SystemdError(call: "sd_device_enumerator_add_match_subsystem", code: rc) }
        }
        for (k, v) in attributes {
            rc = sd_device_enumerator_add_match_sysattr(e, k, v, 1)
            guard rc >= 0 else { throw SystemdError(call: "sd_device_enumerator_add_match_sysattr", code: rc) }
        }
        if includeUninitialized {
            rc = sd_device_enumerator_allow_uninitialized(e)
            guard rc >= 0 else { throw SystemdError(call: "sd_device_enumerator_allow_uninitialized", code: rc) }
        }
        if let parent {
            rc = sd_device_enumerator_add_match_parent(e, parent.handle)
            guard rc >= 0 else { throw SystemdError(call: "sd_device_enumerator_add_match_parent", code: rc) }
        }
        var out: [SDDevice] = []
        var d = sd_device_enumerator_get_device_first(e)
        while let dev = d {
            out.append(SDDevice(borrowing: dev))
            d = sd_device_enumerator_get_device_next(e)
        }
        return out
    }
}
