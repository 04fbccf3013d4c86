/// `virtioctl metrics`: the status of every device as Prometheus text
/// exposition (format 0.0.4), for the node exporter's textfile collector.
///
/// Names: `virtiod_` prefix, counters end in `_total`, base units (bytes,
/// seconds); every device series carries `device` (PCI address) and `type`
/// labels, queue series also `queue`. Plugin queue counters become
/// `virtiod_queue_<counter>_total`; a counter whose name begins with `in_`
/// (`in_flight`) is a level, exported as a gauge `virtiod_queue_<counter>`
/// (docs/plugin-guide.md, "Counters").
public enum MetricsExposition {
    /// A level among a plugin's queue counters, not a count.
    public static func isLevel(_ counter: String) -> Bool { counter.hasPrefix("in_") }

    public static func render(devices: [DeviceReport], up: Bool = true) -> String {
        var out = Families()
        out.sample("virtiod_up", .gauge, "1 when virtioctl reached virtiod, 0 when it is not running.", [:], up ? 1 : 0)
        for d in devices {
            let device = ["device": d.address, "type": d.type]
            out.sample("virtiod_device_info", .gauge, "A virtio PCI function virtiod sees (value always 1).",
                       device.merging(["device_id": d.deviceID, "kernel_driver": d.kernelDriver ?? "none",
                                       "plugin": d.plugin?.name ?? ""]) { a, _ in a }, 1)
            for s in allStates {
                out.sample("virtiod_device_state", .gauge, "1 for the state the device is in, 0 for the others.",
                           device.merging(["state": s.rawValue]) { a, _ in a }, s == d.state ? 1 : 0)
            }
            for e in d.endpoints {
                out.sample("virtiod_endpoint_info", .gauge, "A kernel-facing endpoint of a claimed device (value always 1).",
                           device.merging(["kind": e.kind, "endpoint": e.summary]) { a, _ in a }, 1)
            }
            if let p = d.plugin {
                let labels = device.merging(["plugin": p.name]) { a, _ in a }
                out.sample("virtiod_plugin_restarts_total", .counter,
                           "Plugin processes restarted after a failure (each with a device reset).", labels, Double(p.restarts))
                out.sample("virtiod_plugin_reloads_total", .counter,
                           "Hot reloads that replaced the plugin process without a device reset.", labels, Double(p.reloads ?? 0))
                if let ms = p.lastReloadPauseMS {
                    out.sample("virtiod_plugin_last_reload_pause_seconds", .gauge,
                               "Pause of the last hot reload: quiesce sent to successor running.", labels, ms / 1000)
                }
                if let t = p.startedAt {
                    out.sample("virtiod_plugin_start_time_seconds", .gauge,
                               "When the current plugin process started, seconds since the Unix epoch.", labels, t)
                }
            }
            guard let r = d.driver else { continue }
            out.sample("virtiod_device_config_interrupts_total", .counter, "Configuration change interrupts.", device,
                       Double(r.configInterrupts))
            for q in r.queues {
                let labels = device.merging(["queue": q.name]) { a, _ in a }
                out.sample("virtiod_queue_size", .gauge, "Entries in the virtqueue.", labels, Double(q.size))
                out.sample("virtiod_queue_interrupts_total", .counter, "Used-buffer interrupts of the queue.", labels,
                           Double(q.interrupts))
                for (name, value) in (q.counters ?? [:]).sorted(by: { $0.key < $1.key }) where ControlWire.isSnakeCase(name) {
                    if isLevel(name) {
                        out.sample("virtiod_queue_\(name)", .gauge, "Plugin queue level \(name).", labels, Double(value))
                    } else {
                        out.sample("virtiod_queue_\(name)_total", .counter, "Plugin queue counter \(name).", labels, Double(value))
                    }
                }
            }
        }
        return out.text
    }

    static let allStates: [DeviceState] = [.unclaimed, .refused, .claiming, .starting, .running, .stopping, .failed, .unloaded]

    enum Kind: String { case counter, gauge }

    /// Samples grouped by family, families in first-seen order, each
    /// preceded by its HELP and TYPE lines (the format wants a family's
    /// samples together).
    struct Families {
        var order: [String] = []
        var header: [String: String] = [:]
        var lines: [String: [String]] = [:]

        mutating func sample(_ name: String, _ kind: Kind, _ help: String, _ labels: [String: String], _ value: Double) {
            if header[name] == nil {
                order.append(name)
                header[name] = "# HELP \(name) \(help)\n# TYPE \(name) \(kind.rawValue)\n"
            }
            let l = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\(escape($0.value))\"" }.joined(separator: ",")
            lines[name, default: []].append(name + (l.isEmpty ? "" : "{\(l)}") + " " + format(value))
        }

        var text: String {
            order.map { header[$0]! + lines[$0]!.joined(separator: "\n") + "\n" }.joined()
        }

        func escape(_ s: String) -> String {
            var out = ""
            for c in s {
                switch c {
                case "\\": out += "\\\\"
                case "\"": out += "\\\""
                case "\n": out += "\\n"
                default: out.append(c)
                }
            }
            return out
        }

        func format(_ v: Double) -> String {
            v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
        }
    }
}
