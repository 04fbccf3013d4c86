// swift-tools-version: 6.0
// An out-of-tree virtiod plugin: a virtio-rng (entropy, device type 4)
// driver that feeds the host kernel's random pool. It depends on virtiod's
// plugin SDK by path; a plugin kept in its own repository would name
// virtiod's repository and a version instead.
import PackageDescription

let package = Package(
    name: "virtiod-rng",
    dependencies: [
        .package(name: "virtiod", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "virtiod-rng",
            dependencies: [.product(name: "VirtiodPluginRuntime", package: "virtiod")],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]),
    ],
    swiftLanguageModes: [.v6]
)
