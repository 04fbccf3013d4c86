import Glibc

/// Plugin logging: stderr lines with a syslog priority prefix ("<3>…"), which
/// the journal (through the supervisor's stderr) turns into PRIORITY=.
public enum PluginLog {
    public static func info(_ message: String) { write(6, message) }
    public static func notice(_ message: String) { write(5, message) }
    public static func warning(_ message: String) { write(4, message) }
    public static func error(_ message: String) { write(3, message) }

    static func write(_ priority: Int, _ message: String) {
        let line = "<\(priority)>\(message)\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }
}
