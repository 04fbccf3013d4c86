/// Where the supervisor finds and puts things (defaults: an installed system).
public struct SupervisorOptions: Sendable {
    public var configFile = "/etc/virtiod/virtiod.conf"
    public var configDirectory = "/etc/virtiod/virtiod.conf.d"
    public var socketPath = "/run/virtiod/control"
    public var pluginDirectory = "/usr/libexec/virtiod"
    public var dmaSize = ClaimedDevice.defaultDMASize
    public init() {}
}
