// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "NodeGuard",
    products: [
        .executable(name: "nodeguardd", targets: ["nodeguardd"]),
        .executable(name: "nodeguardctl", targets: ["nodeguardctl"]),
        .library(name: "NodeGuardCore", targets: ["NodeGuardCore"]),
        .library(name: "NodeGuardControl", targets: ["NodeGuardControl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
    ],
    targets: [
        // libiptc (libip4tc + libip6tc) behind a small C shim: entry layout stays in C.
        .target(
            name: "CNodeGuardIPTC",
            linkerSettings: [.linkedLibrary("ip4tc"), .linkedLibrary("ip6tc")]
        ),
        // libnftnl + libmnl behind a small C shim: netlink messages and
        // expressions stay in C; Swift sees NodeGuard's vocabulary only.
        .target(
            name: "CNodeGuardNFT",
            linkerSettings: [.linkedLibrary("nftnl"), .linkedLibrary("mnl")]
        ),
        // Linux calls the Glibc module lacks (SO_PEERCRED's struct ucred).
        .target(name: "CNodeGuardLinux"),
        // libsystemd: sd_notify, the watchdog, socket activation, the journal.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // What the daemon and the CLI share, without C dependencies: the
        // deny-list model and its strict codec, the control protocol's typed
        // requests and responses, the client. nodeguardctl links only this.
        .target(
            name: "NodeGuardControl",
            dependencies: [.product(name: "SystemPackage", package: "swift-system")]
        ),
        .target(
            name: "NodeGuardCore",
            dependencies: [
                "NodeGuardControl",
                "CNodeGuardIPTC",
                "CNodeGuardNFT",
                "CNodeGuardLinux",
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "nodeguardd",
            dependencies: [
                "NodeGuardCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "nodeguardctl",
            // Not NodeGuardCore: the CLI only talks to a socket and must not
            // link libiptc or libsystemd (NodeGuardCtlTests checks DT_NEEDED).
            dependencies: [
                "NodeGuardControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Measurements for bench/run.sh; not packaged.
        .executableTarget(
            name: "nodeguard-bench",
            dependencies: [
                "NodeGuardCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The libFuzzer harness for the decoders of untrusted bytes; fuzz/run.sh
        // builds it with the sanitizers and FUZZING (libFuzzer supplies main).
        .executableTarget(
            name: "nodeguard-fuzz",
            dependencies: ["NodeGuardControl"],
            path: "fuzz",
            exclude: ["run.sh", "seeds"]
        ),
        .testTarget(
            name: "NodeGuardCoreTests",
            dependencies: ["NodeGuardCore", "NodeGuardControl", .product(name: "SystemPackage", package: "swift-system")]
        ),
        // The protocol's typed answers, nodeguardctl's options, and what the CLI links.
        .testTarget(
            name: "NodeGuardControlTests",
            // NodeGuardCore only for runProgram (unpacking the .deb): the test
            // target's dependencies do not reach the nodeguardctl binary.
            dependencies: ["NodeGuardControl", "nodeguardctl", "NodeGuardCore"]
        ),
        // Root only: real kernel, real packets, in network namespaces the tests create.
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["NodeGuardCore"],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
