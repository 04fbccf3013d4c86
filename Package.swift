// swift-tools-version: 6.0
import Foundation
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

/// Device plugins: every folder Plugins/<name>/ with a main.swift is the
/// executable virtiod-<name>; its manifest <name>.plugin sits beside it, and
/// Plugins/<name>/Tests/, if there, is its test target. Nothing here names a
/// plugin: adding one is adding its folder.
let pluginRoot = Context.packageDirectory + "/Plugins"
let fm = FileManager.default
let plugins = ((try? fm.contentsOfDirectory(atPath: pluginRoot)) ?? [])
    .filter { fm.fileExists(atPath: "\(pluginRoot)/\($0)/main.swift") }
    .sorted()
func hasTests(_ plugin: String) -> Bool {
    ((try? fm.contentsOfDirectory(atPath: "\(pluginRoot)/\(plugin)/Tests")) ?? []).contains { $0.hasSuffix(".swift") }
}
/// Not sources: tests, manifests, docs and fuzz corpora (Fuzz/*.swift are
/// sources: a plugin's fuzz entry is built into it with -DFUZZING).
func nonSources(_ plugin: String) -> [String] {
    ((try? fm.contentsOfDirectory(atPath: "\(pluginRoot)/\(plugin)")) ?? [])
        .filter { $0 == "Tests" || $0.hasSuffix(".plugin") || $0.hasSuffix(".md") }
        + (fm.fileExists(atPath: "\(pluginRoot)/\(plugin)/Fuzz/Corpus") ? ["Fuzz/Corpus"] : [])
}

let package = Package(
    name: "virtiod",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "VirtioCore", targets: ["VirtioCore"]),
        .library(name: "VirtioSoftDevice", targets: ["VirtioSoftDevice"]),
        // The plugin SDK (docs/plugin-guide.md): what a plugin executable
        // links — the runtime, the virtio core, the syscall wrappers and
        // the supervisor protocol.
        .library(name: "VirtiodPluginRuntime", targets: ["VirtiodPluginRuntime", "VirtioCore", "VirtioSystem", "VirtiodProtocol"]),
        .executable(name: "virtiod", targets: ["virtiod"]),
        .executable(name: "virtioctl", targets: ["virtioctl"]),
        .executable(name: "virtio-ring-bench", targets: ["VirtioRingBench"]),
        .executable(name: "virtio-ring-fuzz", targets: ["VirtioRingFuzz"]),
        .executable(name: "virtiod-fuzz", targets: ["VirtiodFuzz"]),
    ] + plugins.map { .executable(name: "virtiod-\($0)", targets: ["virtiod-\($0)"]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
    ],
    targets: [
        // Header-only C shim for what Glibc does not import into Swift
        // (memfd_create, eventfd, _GNU_SOURCE-only declarations).
        .target(name: "CVirtioShim"),
        // Thin typed wrappers over the syscalls the project needs (memfd, mmap, spawn).
        .target(
            name: "VirtioSystem",
            dependencies: ["CVirtioShim", "CUring", "VirtioCore", .product(name: "SystemPackage", package: "swift-system"),
                           .product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: strict),
        // The virtio vocabulary, the Transport abstraction, DMA memory and the
        // driver side of split and packed virtqueues. No device I/O.
        .target(
            name: "VirtioCore",
            dependencies: [.product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: strict),
        // io_uring through liburing (needs liburing-dev), behind an opaque
        // handle: liburing's header clashes with swift-system's (ublk's commands).
        .target(name: "CUring", linkerSettings: [.linkedLibrary("uring")]),
        // libsystemd (sd-device, sd-daemon, sd-journal); needs libsystemd-dev.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // The supervisor's logic: discovery, claim policy, VFIO, plugins, control socket.
        .target(
            name: "VirtiodSupervisor",
            dependencies: ["VirtioCore", "VirtioSystem", "VirtioPCI", "VirtiodProtocol", "CSystemd"],
            swiftSettings: strict),
        // The virtio PCI transport (capabilities, common config, notify) over VFIO.
        .target(
            name: "VirtioPCI",
            dependencies: ["VirtioCore", "VirtioSystem"],
            swiftSettings: strict),
        // The versioned JSON messages of the control socket and the plugin sockets.
        .target(
            name: "VirtiodProtocol",
            dependencies: ["VirtioCore"],
            swiftSettings: strict),
        // What every plugin process shares: attach, bring-up, reporting, the event loop.
        .target(
            name: "VirtiodPluginRuntime",
            dependencies: ["VirtioCore", "VirtioSystem", "VirtioPCI", "VirtiodProtocol", "CVirtioShim"],
            swiftSettings: strict),
        // `virtioctl`: the command-line client of the control socket.
        .executableTarget(
            name: "virtioctl",
            dependencies: ["VirtiodProtocol", "VirtioSystem", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),
        // The `virtiod` command (service and one-shot verbs such as `discover`).
        .executableTarget(
            name: "virtiod",
            dependencies: ["VirtiodSupervisor", "VirtiodProtocol", "VirtioSystem", "CVirtioShim", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),
        // Device side of the rings in software: loopback net, RAM block, echo.
        .target(
            name: "VirtioSoftDevice",
            dependencies: ["VirtioCore", .product(name: "Atomics", package: "swift-atomics")],
            swiftSettings: strict),
        .executableTarget(
            name: "VirtioRingBench",
            dependencies: ["VirtioCore", "VirtioSoftDevice"],
            swiftSettings: strict),
        // Fuzz targets over the supervisor's parsers (config, manifests,
        // control protocol, hand-over record, netlink, PCI capabilities).
        .executableTarget(
            name: "VirtiodFuzz",
            dependencies: ["VirtiodSupervisor", "VirtiodProtocol", "VirtioPCI", "VirtioSystem", "VirtioCore"],
            swiftSettings: strict),
        .executableTarget(
            name: "VirtioRingFuzz",
            dependencies: ["VirtioCore", "VirtioSoftDevice", "VirtioSystem"],
            swiftSettings: strict),
        // Helper process for the hand-over test: drives one side of a live queue.
        .executableTarget(
            name: "HandoverProbe",
            dependencies: ["VirtioCore", "VirtioSystem", "VirtioSoftDevice"],
            path: "Tests/HandoverProbe",
            swiftSettings: strict),
        // The supervisor's own logic: config, manifests, control verbs, claim checks.
        .testTarget(
            name: "VirtiodSupervisorTests",
            dependencies: ["VirtiodSupervisor", "VirtiodProtocol", "VirtioCore", "VirtioSystem", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict),
        .testTarget(
            name: "VirtioCoreTests",
            dependencies: ["VirtioCore", "VirtioSoftDevice", "VirtioSystem", "VirtiodSupervisor", "VirtioPCI",
                           "VirtiodProtocol", "HandoverProbe"],
            swiftSettings: strict),
    ] + plugins.map {
        .executableTarget(name: "virtiod-\($0)", dependencies: ["VirtiodPluginRuntime", "VirtioCore", "VirtioSystem", "CVirtioShim"],
                          path: "Plugins/\($0)", exclude: nonSources($0), swiftSettings: strict)
    } + plugins.filter(hasTests).map {
        .testTarget(name: "virtiod-\($0)-tests", dependencies: [.target(name: "virtiod-\($0)"), "VirtioCore", "VirtioSoftDevice"],
                    path: "Plugins/\($0)/Tests", swiftSettings: strict)
    },
    swiftLanguageModes: [.v6]
)
