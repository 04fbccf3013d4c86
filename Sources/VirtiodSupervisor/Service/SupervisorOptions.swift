/// Where the supervisor finds and puts things (defaults: an installed system).
public struct SupervisorOptions: Sendable {
    public var configFile = "/etc/virtiod/virtiod.conf"
    public var configDirectory = "/etc/virtiod/virtiod.conf.d"
    public var socketPath = "/run/virtiod/control"
    /// Plugin manifest folders, highest precedence first.
    public var manifestDirectories = PluginCatalog.defaultDirectories
    public init() {}
}
