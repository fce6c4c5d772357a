// swift-tools-version:6.1
// Berth: a container engine in Swift that speaks containerd's API.
//
// Layout:
//   Sources/  core libraries (BerthCore, BerthTOML, BerthAPI, BerthGRPC) and the executables.
//   Plugins/  one target per engine plugin; a plugin never depends on another plugin.
//   Tests/    unit tests per library, plugin tests, and integration tests driving berthd with ctr.
import PackageDescription

let swiftSettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

/// Every engine plugin target: name, path under Plugins/, and the core modules it may use.
let pluginTargets: [(name: String, path: String, deps: [Target.Dependency])] = [
    ("BerthMetadataPlugin", "Plugins/Metadata/SQLite", ["BerthSnapshotStorage", .product(name: "GRDB", package: "GRDB.swift")]),
    ("BerthEventsPlugin", "Plugins/Events/Exchange", []),
    ("BerthVersionService", "Plugins/Services/Version", ["BerthGRPC", "BerthAPI"]),
    ("BerthIntrospectionService", "Plugins/Services/Introspection", ["BerthGRPC", "BerthAPI"]),
    ("BerthNamespacesService", "Plugins/Services/Namespaces", ["BerthGRPC", "BerthAPI"]),
    ("BerthEventsService", "Plugins/Services/Events", ["BerthGRPC", "BerthAPI"]),
    ("BerthGRPCServerPlugin", "Plugins/Server/GRPC", [
        "BerthGRPC", "BerthAPI", .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP2", package: "swift-nio-http2"),
    ]),
    ("BerthExamplePlugin", "Plugins/Examples/Greeter", []),
    ("BerthContentPlugin", "Plugins/Content/Local", [.product(name: "Crypto", package: "swift-crypto")]),
    ("BerthGCPlugin", "Plugins/GC/Scheduler", []),
    ("BerthContentService", "Plugins/Services/Content", [
        "BerthGRPC", "BerthAPI", .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
    ]),
    ("BerthImagesService", "Plugins/Services/Images", ["BerthGRPC", "BerthAPI"]),
    ("BerthLeasesService", "Plugins/Services/Leases", ["BerthGRPC", "BerthAPI"]),
    ("BerthSnapshotsService", "Plugins/Services/Snapshots", ["BerthGRPC", "BerthAPI"]),
    ("BerthOverlaySnapshotter", "Plugins/Snapshotters/Overlay", ["BerthSnapshotStorage"]),
    ("BerthNativeSnapshotter", "Plugins/Snapshotters/Native", ["BerthSnapshotStorage"]),
    ("BerthBtrfsSnapshotter", "Plugins/Snapshotters/Btrfs", [
        "BerthSnapshotStorage", "CBtrfsUtil", .product(name: "GRDB", package: "GRDB.swift"),
    ]),
    ("BerthDevmapperSnapshotter", "Plugins/Snapshotters/Devmapper", [
        "BerthSnapshotStorage", .product(name: "GRDB", package: "GRDB.swift"),
    ]),
    // Images (issue "Images"): the walking differ applies and computes layers; the Diff service exposes it.
    ("BerthWalkingDiffer", "Plugins/Differ/Walking", ["BerthArchive", "BerthOCI"]),
    ("BerthDiffService", "Plugins/Services/Diff", ["BerthGRPC", "BerthAPI"]),
    // Containers and tasks (issue "Containers and tasks"): runtime v2 (shims over ttrpc) and the two services.
    ("BerthRuntimeV2", "Plugins/Runtime/V2", ["BerthTTRPC", "BerthAPI"]),
    ("BerthContainersService", "Plugins/Services/Containers", ["BerthGRPC", "BerthAPI"]),
    ("BerthTasksService", "Plugins/Services/Tasks", ["BerthGRPC", "BerthAPI"]),
    // Transfers (issue "Images"): pull, push, import and export in the daemon, with progress over streams.
    ("BerthTransferPlugin", "Plugins/Transfer/Local", ["BerthImage", "BerthGRPC", "BerthAPI"]),
    ("BerthStreamingService", "Plugins/Services/Streaming", ["BerthGRPC", "BerthAPI"]),
    ("BerthTransferService", "Plugins/Services/Transfer", ["BerthGRPC", "BerthAPI", "BerthImage", "BerthRegistry", "BerthOCI"]),
]

/// The snapshotter plugins, which the snapshotter conformance tests run against.
let snapshotterTargets = pluginTargets.map(\.name).filter { $0.hasSuffix("Snapshotter") }

let package = Package(
    name: "Berth",
    products: [
        .executable(name: "berthd", targets: ["berthd"]),
        .executable(name: "berth", targets: ["berth"]),
        .executable(name: "berth-runc", targets: ["berth-runc"]),
        .executable(name: "berth-shim", targets: ["berth-shim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // No default traits: BinaryDelimitedStreams makes SwiftProtobuf import all of Foundation (ICU and
        // CoreFoundation), which berth-shim would then link and load for every container.
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0", traits: []),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // A TOML 1.0 parser that keeps source positions, so config errors can name file, line and key.
        .target(name: "BerthTOML", swiftSettings: swiftSettings),
        // Errors, plugin registry and graph, config, filters, identifiers, shared service protocols.
        // One pthread_create wrapper for berthd's core, ttrpc and berth-shim (no dependencies, no Foundation).
        .target(name: "BerthThreads", swiftSettings: swiftSettings),
        // A small SHA-256 for short inputs (chain IDs, shim socket names): no crypto library in the shim or BerthOCI.
        .target(name: "BerthSHA256", swiftSettings: swiftSettings),
        .target(
            name: "BerthCore",
            dependencies: ["BerthTOML", "BerthThreads", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // Generated protobuf and gRPC code for containerd's API (scripts/gen-protos.sh).
        .target(
            name: "BerthAPI",
            dependencies: [
                "BerthShimAPI", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings),
        // gRPC glue: error mapping, namespace header, service plugin protocol, unix-socket client.
        .target(
            name: "BerthGRPC",
            dependencies: [
                "BerthCore", "BerthAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "berthd",
            dependencies: [
                "BerthCore", "BerthGRPC", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ] + pluginTargets.map { .target(name: $0.name) },
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "berth",
            dependencies: [
                "BerthCore", "BerthGRPC", "BerthAPI", "BerthOCI", "BerthSpec", "BerthRegistry",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings),
        // Per-snapshotter metadata (key -> id, parent chain, kind, labels, usage) in SQLite: containerd's
        // snapshots/storage, shared by every snapshotter backend.
        .target(
            name: "BerthSnapshotStorage",
            dependencies: ["BerthCore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings),
        // ttrpc, containerd's small RPC protocol for shims: framing, client and server on unix sockets.
        .target(
            name: "BerthTTRPC",
            dependencies: ["BerthThreads", "BerthSHA256", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthTTRPCTests", dependencies: ["BerthTTRPC", "BerthAPI", "BerthTestSupport"],
            swiftSettings: swiftSettings),
        .systemLibrary(
            name: "CBtrfsUtil", path: "Sources/CBtrfsUtil", providers: [.apt(["libbtrfsutil-dev"])]),
        // BEGIN berth-runc (the OCI runtime; owned by the runtime work, see issue "berth-runc")
        .target(name: "CBerthRunc", path: "Sources/CBerthRunc"),
        .systemLibrary(
            name: "CSeccomp", path: "Sources/CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        // Release builds link the Swift runtime statically: berth-runc runs three times per container, and the
        // dynamic loader's relocations of libswiftCore were a third of its start-up.
        .executableTarget(
            name: "berth-runc",
            dependencies: ["CBerthRunc", "CSeccomp"],
            swiftSettings: swiftSettings,
            linkerSettings: [
                .unsafeFlags(
                    ["-static-stdlib", "-l_FoundationCShims", "-l_FoundationCollections", "-lswiftSynchronization"],
                    .when(configuration: .release)),
            ]),
        .testTarget(name: "BerthRuncTests", dependencies: ["berth-runc", "CBerthRunc", "BerthCore"], swiftSettings: swiftSettings),
        // END berth-runc
        // BEGIN images (issue "Images")
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // openat2(2) for the layer applier's path resolution (no glibc wrapper).
        .target(name: "CBerthSys", path: "Sources/CBerthSys"),
        // Layers: streaming tar read/write, gzip/zstd, safe apply with whiteouts, diff of two trees.
        .target(
            name: "BerthArchive",
            dependencies: [
                "BerthCore", "CZlib", "CZstd", "CBerthSys", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings),
        // OCI image types: descriptors, manifests, indexes, configs, media types, references, platforms.
        .target(name: "BerthOCI", dependencies: ["BerthCore", "BerthSHA256"], swiftSettings: swiftSettings),
        // OCI distribution client: auth, hosts.toml, resolve, fetch, push.
        .target(
            name: "BerthRegistry",
            dependencies: [
                "BerthCore", "BerthOCI", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings),
        // Image transfers over the stores: pull with unpack, push, import and export (used by the transfer plugin).
        .target(
            name: "BerthImage", dependencies: ["BerthCore", "BerthOCI", "BerthRegistry", "BerthArchive"],
            swiftSettings: swiftSettings),
        // The image engine in-process (content, snapshotters, metadata, differ, transferrer) for tests.
        .target(
            name: "BerthEngineTestSupport",
            dependencies: [
                "BerthCore", "BerthImage", "BerthContentPlugin", "BerthDiffService", "BerthEventsPlugin",
                "BerthMetadataPlugin", "BerthNativeSnapshotter", "BerthOverlaySnapshotter", "BerthTransferPlugin",
                "BerthWalkingDiffer", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthPullTests",
            dependencies: ["BerthImage", "BerthEngineTestSupport", "BerthTestSupport", "BerthOCI", "BerthRegistry", "BerthCore"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthImageArchiveTests",
            dependencies: ["BerthImage", "BerthEngineTestSupport", "BerthTestSupport", "BerthOCI", "BerthRegistry", "BerthCore"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthArchiveTests", dependencies: ["BerthArchive", "BerthOCI", "BerthTestSupport", "BerthCore"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthImageTests",
            dependencies: ["BerthOCI", "BerthRegistry", "BerthTestSupport", "BerthCore"],
            swiftSettings: swiftSettings),
        // END images
        // BEGIN shim (issue "Containers and tasks"): containerd's shim v2 over ttrpc, driving a runc-like runtime.
        .target(name: "CBerthShim", path: "Sources/berth-shim/CShim"),
        // The generated messages the shim speaks (scripts/gen-protos.sh puts them here): SwiftProtobuf only, no gRPC
        // or Foundation, so the shim stays small. BerthAPI re-exports them.
        .target(
            name: "BerthShimAPI", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings),
        // Release builds link the Swift runtime statically: a smaller shim (RSS) that needs no toolchain.
        .executableTarget(
            name: "berth-shim",
            dependencies: ["BerthTTRPC", "BerthShimAPI", "CBerthShim"],
            exclude: ["CShim"],
            swiftSettings: swiftSettings,
            // SwiftProtobuf imports FoundationEssentials, whose static parts are named here.
            linkerSettings: [
                .unsafeFlags(
                    ["-static-stdlib", "-l_FoundationCShims", "-l_FoundationCollections", "-lswiftSynchronization"],
                    .when(configuration: .release)),
            ]),
        .testTarget(
            name: "BerthShimTests", dependencies: ["BerthTTRPC", "BerthAPI", "BerthTestSupport", "CBerthShim"],
            swiftSettings: swiftSettings),
        // END shim
        // BEGIN run (issue "Containers and tasks"): OCI runtime spec from an image config and `berth run` flags,
        // with a default seccomp profile equal in effect to containerd's.
        .target(name: "BerthSpec", dependencies: ["BerthCore", "BerthOCI"], swiftSettings: swiftSettings),
        .testTarget(name: "BerthSpecTests", dependencies: ["BerthSpec", "BerthOCI"], swiftSettings: swiftSettings),
        // END run
        // Shared conformance suites (the content store's) run by each implementation's tests.
        .target(
            name: "BerthTestSupport",
            dependencies: ["BerthCore", "BerthOCI", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthContentTests", dependencies: ["BerthContentPlugin", "BerthTestSupport", "BerthCore"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthSnapshotterTests",
            dependencies: [
                "BerthSnapshotStorage", "BerthTestSupport", "BerthCore", .product(name: "GRDB", package: "GRDB.swift"),
            ]
                + snapshotterTargets.map { .target(name: $0) },
            swiftSettings: swiftSettings),
        .testTarget(name: "BerthTOMLTests", dependencies: ["BerthTOML"], swiftSettings: swiftSettings),
        .testTarget(name: "BerthCoreTests", dependencies: ["BerthCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthPluginTests",
            dependencies: ["BerthCore", "BerthGRPC", "BerthAPI", "BerthTestSupport"]
                + pluginTargets.map { .target(name: $0.name) },
            swiftSettings: swiftSettings),
        .testTarget(
            name: "BerthIntegrationTests",
            dependencies: [
                "BerthCore", "BerthGRPC", "BerthAPI", "BerthSHA256", "BerthTTRPC", "BerthTestSupport", "berthd", "berth",
                "berth-shim",
            ],
            swiftSettings: swiftSettings),
    ] + pluginTargets.map { plugin in
        .target(
            name: plugin.name,
            dependencies: ["BerthCore"] + plugin.deps,
            path: plugin.path,
            swiftSettings: swiftSettings)
    }
)
