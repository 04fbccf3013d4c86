import Synchronization
import VirtioCore

/// A one-queue device that copies each chain's readable bytes into its
/// writable bytes and returns it (used length = bytes copied). With
/// `holdBack` it keeps up to that many chains and completes them in a
/// shuffled order, to exercise out-of-order completion.
public final class EchoModel: SoftDeviceModel, @unchecked Sendable {
    // SAFETY (Sendable): `service` runs on one thread at a time (see SoftDevice).
    public let deviceType: DeviceType
    public let deviceFeatures: UInt64
    public let queueSizes: [Int]
    public var holdBack: Int
    private var held: [DeviceChain] = []
    private var chain = DeviceChain()
    private var scratch = [UInt8](repeating: 0, count: 65536)
    private var rng = SplitMix64(seed: 42)
    public private(set) var served = 0

    public init(deviceType: DeviceType = .entropy, features: UInt64, queueSize: Int = 256, holdBack: Int = 0) {
        self.deviceType = deviceType
        self.deviceFeatures = features
        self.queueSizes = [queueSize]
        self.holdBack = holdBack
    }

    public func config() -> [UInt8] { [] }

    public func service(queue index: Int, queues: [DeviceQueue?]) -> [Int] {
        guard let q = queues[index] else { return [] }
        while q.pop(into: &chain) {
            if holdBack > 0 {
                held.append(chain)
                if held.count > holdBack { complete(held.remove(at: Int(rng.next() % UInt64(held.count))), q) }
            } else {
                complete(chain, q)
            }
        }
        return q.commit() ? [index] : []
    }

    /// Complete everything held back (in shuffled order).
    public func flush(_ queues: [DeviceQueue?]) -> Bool {
        guard let q = queues[0] else { return false }
        while !held.isEmpty { complete(held.remove(at: Int(rng.next() % UInt64(held.count))), q) }
        return q.commit()
    }

    private func complete(_ c: DeviceChain, _ q: DeviceQueue) {
        let n = min(c.readableLength, c.writableCapacity, scratch.count)
        let copied = scratch.withUnsafeMutableBytes { buf in
            let r = q.read(c, into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<n]))
            return q.write(c, from: UnsafeRawBufferPointer(rebasing: buf[0..<r]))
        }
        q.push(c, length: UInt32(copied))
        served += 1
    }
}

/// Small deterministic PRNG (SplitMix64) for reproducible tests.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
