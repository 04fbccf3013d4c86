/// Why bringing up a device failed.
public enum InitializationError: Error, Equatable, CustomStringConvertible {
    case missingRequiredFeatures(missing: UInt64, deviceType: DeviceType)
    case featuresNotAccepted(offered: UInt64)
    case deviceNeedsReset
    case transport(TransportError)

    public var description: String {
        switch self {
        case .missingRequiredFeatures(let m, let t):
            "device lacks required features: \(featureNames(m, deviceType: t).joined(separator: ", "))"
        case .featuresNotAccepted(let f):
            "device cleared FEATURES_OK after the driver wrote features 0x\(String(f, radix: 16))"
        case .deviceNeedsReset: "device set DEVICE_NEEDS_RESET during initialisation"
        case .transport(let e): e.description
        }
    }
}

/// What a driver wants from feature negotiation.
public struct FeatureRequest: Sendable {
    /// Bits the driver cannot work without.
    public var required: UInt64
    /// Bits the driver will use if offered.
    public var wanted: UInt64
    /// (feature, what it needs): a wanted feature is dropped unless everything
    /// it needs is negotiated too (e.g. virtio 1.2 §5.1.3.1 for net).
    public var dependencies: [(feature: UInt64, needs: UInt64)]
    public init(required: UInt64, wanted: UInt64 = 0, dependencies: [(feature: UInt64, needs: UInt64)] = []) {
        self.required = required
        self.wanted = wanted
        self.dependencies = dependencies
    }
    public func negotiate(offered: UInt64) -> UInt64 {
        var bits = offered & (required | wanted)
        // Dropping one feature can orphan another: repeat until nothing changes.
        var changed = true
        while changed {
            changed = false
            for d in dependencies where bits & d.feature != 0 && bits & d.needs != d.needs && required & d.feature == 0 {
                bits &= ~d.feature
                changed = true
            }
        }
        return bits
    }
}

/// The driver initialisation sequence (virtio 1.2 §3.1.1):
/// reset → ACKNOWLEDGE → DRIVER → read features → write subset → FEATURES_OK →
/// re-read FEATURES_OK → device setup (queues, config) → DRIVER_OK.
/// Any failure sets FAILED and is reported, never ignored.
public struct DeviceInitializer {
    public let transport: any Transport

    public init(transport: any Transport) { self.transport = transport }

    /// Runs the sequence; `setUp` programs queues and reads config between
    /// FEATURES_OK and DRIVER_OK. Returns the negotiated feature bits.
    @discardableResult
    public func run(features request: FeatureRequest, setUp: (UInt64) throws -> Void) throws -> UInt64 {
        do {
            try transport.reset()
            transport.writeStatus(.acknowledge)
            transport.writeStatus([.acknowledge, .driver])
            let offered = transport.readDeviceFeatures()
            let missing = request.required & ~offered
            guard missing == 0 else {
                throw InitializationError.missingRequiredFeatures(missing: missing, deviceType: transport.deviceType)
            }
            let negotiated = request.negotiate(offered: offered)
            transport.writeDriverFeatures(negotiated)
            transport.writeStatus([.acknowledge, .driver, .featuresOK])
            let status = transport.readStatus()
            guard status.contains(.featuresOK) else {
                throw InitializationError.featuresNotAccepted(offered: negotiated)
            }
            try setUp(negotiated)
            transport.writeStatus([.acknowledge, .driver, .featuresOK, .driverOK])
            if transport.readStatus().contains(.deviceNeedsReset) {
                throw InitializationError.deviceNeedsReset
            }
            return negotiated
        } catch {
            transport.writeStatus(transport.readStatus().union(.failed))
            if let e = error as? TransportError { throw InitializationError.transport(e) }
            throw error
        }
    }
}
