import CSystemd
import Glibc

/// Logging to the journal with structured fields (sd_journal_sendv):
/// MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=virtiod, and VIRTIO_DEVICE= /
/// VIRTIO_PLUGIN= when the line is about one device or plugin. Without a
/// journal (run by hand, tests) lines go to stderr instead.
public enum Log {
    public enum Priority: Int, Sendable {
        case error = 3, warning = 4, notice = 5, info = 6, debug = 7
    }

    /// The journal's socket exists: systemd-journald runs.
    nonisolated(unsafe) static var toJournal: Bool = access("/run/systemd/journal/socket", F_OK) == 0
        && getenv("VIRTIOD_LOG_STDERR") == nil

    public static func error(_ m: String, device: String? = nil, plugin: String? = nil) { log(.error, m, device, plugin) }
    public static func warning(_ m: String, device: String? = nil, plugin: String? = nil) { log(.warning, m, device, plugin) }
    public static func notice(_ m: String, device: String? = nil, plugin: String? = nil) { log(.notice, m, device, plugin) }
    public static func info(_ m: String, device: String? = nil, plugin: String? = nil) { log(.info, m, device, plugin) }

    /// `text` fit to quote in a log line or a status: control characters
    /// (NUL, escape sequences, CR…) as \u{…}, at most `limit` characters,
    /// with what was cut said. Bad input must not hide the file:line of
    /// an error, nor make the line too long for the journal or sd_notify.
    public static func quoted(_ text: String, limit: Int = 160) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            guard count < limit else {
                let rest = text.unicodeScalars.count - count
                return out + "… (\(rest) more characters)"
            }
            if scalar.value < 0x20 || scalar.value == 0x7f || (0x80..<0xa0).contains(scalar.value) {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
            count += 1
        }
        return out
    }

    public static func log(_ p: Priority, _ message: String, _ device: String?, _ plugin: String?) {
        let prefix = [device, plugin.map { "[\($0)]" }].compactMap { $0 }.joined(separator: " ")
        let text = prefix.isEmpty ? message : prefix + ": " + message
        guard toJournal else {
            let line = "<\(p.rawValue)>\(text)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
            return
        }
        var fields = ["MESSAGE=\(text)", "PRIORITY=\(p.rawValue)", "SYSLOG_IDENTIFIER=virtiod"]
        if let device { fields.append("VIRTIO_DEVICE=\(device)") }
        if let plugin { fields.append("VIRTIO_PLUGIN=\(plugin)") }
        // SAFETY: the iovecs point into C copies of the fields that live until
        // the `defer` frees them, after sd_journal_sendv has returned.
        let copies = fields.map { strdup($0)! }
        defer { copies.forEach { free($0) } }
        var iov = copies.map { iovec(iov_base: UnsafeMutableRawPointer($0), iov_len: strlen($0)) }
        let rc = iov.withUnsafeMutableBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        if rc < 0 {
            let line = "<\(p.rawValue)>\(text)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
    }
}
