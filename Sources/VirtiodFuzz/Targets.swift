// Fuzz targets over every parser of input virtiod does not write itself:
// the INI config and plugin manifests (admin files, maybe garbage), the
// control protocol (any local user in the virtiod group), the hand-over
// record (memory a plugin can write), netlink messages (the kernel, but
// parsed by hand) and the PCI capability list (a device's config space).
// Each checks that nothing traps and that what comes out is sane; `make
// fuzz` runs each under libFuzzer, `make test` replays their corpora
// (Tests/FuzzCorpus/<target>/).
import FoundationEssentials
import VirtioCore
import VirtioPCI
import VirtioSystem
import VirtiodProtocol
import VirtiodSupervisor

enum FuzzTarget: String, CaseIterable {
    case ini, control, handover, netlink, pcicaps

    func run(_ data: UnsafeRawBufferPointer) {
        switch self {
        case .ini: fuzzINI(data)
        case .control: fuzzControl(data)
        case .handover: fuzzHandover(data)
        case .netlink: fuzzNetlink(data)
        case .pcicaps: fuzzPCICapabilities(data)
        }
    }
}

/// A config error must name its place and stay short and printable whatever the input.
func checkError(_ e: ConfigError) {
    guard e.description.count < 600, !e.description.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7f..<0xa0).contains($0.value) }) else {
        fatalError("unfit error text: \(e.description.prefix(200))")
    }
}

func fuzzINI(_ data: UnsafeRawBufferPointer) {
    let text = String(decoding: data, as: UTF8.self)
    do { _ = try ClaimPolicy.parse(text, file: "/fuzz/50-fuzz.conf") } catch { checkError(error) }
    do {
        let m = try PluginManifest.parse(text, path: "/fuzz/fuzz.plugin", endpointKinds: ["tap", "random"])
        guard m.exec.hasPrefix("/"), !m.deviceTypes.isEmpty, m.name == "fuzz" else { fatalError("manifest accepted without its musts") }
    } catch { checkError(error) }
}

nonisolated(unsafe) let fuzzSupervisor: Supervisor = {
    var o = SupervisorOptions()
    o.manifestDirectories = []
    o.configFile = "/nonexistent"
    o.configDirectory = "/nonexistent"
    return Supervisor(options: o)
}()

func fuzzControl(_ data: UnsafeRawBufferPointer) {
    guard let request = try? ControlWire.decoder.decode(ControlRequest.self, from: Data(data)) else { return }
    // A supervisor with no devices and no plugins: every verb must answer, as root and not.
    for uid: UInt32 in [0, 1000] {
        let r = fuzzSupervisor.handle(request, uid: uid)
        guard (try? ControlWire.encoder.encode(r)) != nil else { fatalError("response does not encode") }
        if uid != 0, !ControlProtocol.readOnlyVerbs.contains(request.verb), r.ok { fatalError("a changing verb worked without root") }
    }
}

func fuzzHandover(_ data: UnsafeRawBufferPointer) {
    let region = DMARegion(anonymousSize: 1 << 16)
    let n = min(data.count, region.size)
    region.copy(Array(data.prefix(n)), into: DMASlice(offset: 0, length: n))
    let area = HandoverArea(region: region)
    guard let record = try? area.load() else { return }
    // Accepted: it must survive its own round trip.
    do {
        try area.save(record)
        let again = try area.load()
        guard again.queues.count == record.queues.count, again.negotiated == record.negotiated else { fatalError("round trip changed the record") }
    } catch {
        // Too big to write back into this area is fine; anything else is not.
        if case QueueStateError.truncated = error { return }
        fatalError("an accepted record does not save: \(error)")
    }
}

func fuzzNetlink(_ data: UnsafeRawBufferPointer) {
    let bytes = Array(data)
    var seen = 0
    NetlinkParser.forEachMessage(bytes[...]) { _, body in
        seen += body.count
        NetlinkParser.forEachAttribute(body.dropFirst(min(8, body.count))) { _, value in seen += value.count }
    }
    guard seen <= bytes.count * 2 else { fatalError("parser saw more bytes than there are") }
}

func fuzzPCICapabilities(_ data: UnsafeRawBufferPointer) {
    guard let caps = try? VirtioPCICapabilities.parse(config: Array(data)) else { return }
    for loc in [caps.common, caps.notify, caps.isr, caps.device].compactMap({ $0 }) {
        guard loc.bar >= 0, loc.bar < 6, loc.offset >= 0, loc.length >= 0 else { fatalError("capability out of range: \(loc)") }
    }
    guard caps.msixTableSize >= 0, caps.msixTableSize <= 2048 else { fatalError("MSI-X table size \(caps.msixTableSize)") }
}
