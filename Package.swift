// swift-tools-version: 6.0
import PackageDescription

// The merge's hot loops are built twice from one file (Sources/BasinKernels/Kernels.swift): a baseline build and, on
// x86-64, an AVX2 build that StreamingKernels calls only when the CPU has AVX2 (see that file for why and what keeps
// it safe). `-Xcc -mavx2` sets the target features of the Swift code generator too; FMA is deliberately not enabled.
#if arch(x86_64)
let avx2Flags: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-mavx2"])]
#else
let avx2Flags: [SwiftSetting] = []
#endif

let package = Package(
    name: "Basin",
    // Linux only (Debian/Ubuntu with libopenblas-dev and libncurses-dev): no platforms are declared because no
    // other is built or tested. The libc calls are guarded (Glibc / Musl / Darwin) and /proc reads fall back to nil.
    products: [
        .executable(name: "basin", targets: ["basin"]),
        // The engine: what a program needs to read models and data, evaluate paths, align, merge and soup.
        // The UI modules (BasinUI, BasinCurses, BasinExplorer) are in no product and use `package` access.
        .library(name: "BasinFusion", targets: ["BasinTensor", "BasinIO", "BasinNet", "BasinFusion"]),
        // Fuzzing (docs/reliability.md): .ci/fuzz builds it with -sanitize=fuzzer into .build-fuzz.
        .executable(name: "basin-fuzz", targets: ["BasinFuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // ONNX: the runtime library only; Sources/BasinIO/ONNX/onnx.pb.swift is generated once and committed.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
    ],
    targets: [
        // The only C: OpenBLAS (cblas + LAPACK) and ncursesw, each behind one shim header.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CNcurses", path: "Sources/CNcurses"),

        // Engine.
        .target(name: "BasinTensor", dependencies: ["CBLAS"]),
        .target(name: "BasinIO", dependencies: [
            "BasinTensor",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ], exclude: ["ONNX/onnx.proto", "ONNX/regenerate.sh"]),
        .target(name: "BasinNet", dependencies: ["BasinTensor", "BasinIO"]),
        .target(name: "BasinKernels"),
        .target(name: "BasinKernelsAVX2", swiftSettings: avx2Flags),
        .target(name: "BasinFusion", dependencies: [
            "BasinTensor", "BasinIO", "BasinNet", "BasinKernels", "BasinKernelsAVX2", "CBLAS",
            .product(name: "Yams", package: "Yams"),
        ]),

        // Terminal UI: a pure cell-buffer core, the ncurses backend, and the explorer built on both.
        .target(name: "BasinUI"),
        .target(name: "BasinCurses", dependencies: ["BasinUI", "CNcurses"]),
        .target(name: "BasinExplorer", dependencies: ["BasinUI", "BasinFusion", "BasinNet", "BasinIO", "BasinTensor"]),

        .executableTarget(name: "basin", dependencies: [
            "BasinExplorer", "BasinCurses", "BasinFusion", "BasinNet", "BasinIO", "BasinTensor",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // The readers users hand files to, as functions of bytes for libFuzzer, and its driver.
        .target(name: "BasinFuzzTargets", dependencies: ["BasinIO", "BasinNet", "BasinFusion", "BasinTensor"]),
        .executableTarget(name: "BasinFuzz", dependencies: ["BasinFuzzTargets"]),

        // Locates Tests/Fixtures (copied from ../shared) from the source tree, so tests need nothing beside the clone.
        .target(name: "BasinTestSupport", dependencies: ["BasinIO", "BasinTensor"], path: "Tests/BasinTestSupport"),
        .testTarget(name: "BasinTensorTests", dependencies: ["BasinTestSupport", "BasinTensor"]),
        .testTarget(name: "BasinIOTests", dependencies: ["BasinTestSupport", "BasinIO", "BasinTensor", "BasinFuzzTargets",
                                                         .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "BasinNetTests", dependencies: ["BasinTestSupport", "BasinNet", "BasinIO", "BasinTensor"]),
        .testTarget(name: "BasinFusionTests", dependencies: ["BasinTestSupport", "BasinFusion", "BasinNet", "BasinIO", "BasinTensor",
                                                             "BasinKernels", "BasinKernelsAVX2",
                                                             .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(name: "BasinUITests", dependencies: ["BasinTestSupport", "BasinUI"]),
        .testTarget(name: "BasinExplorerTests", dependencies: ["BasinTestSupport", "BasinExplorer", "BasinUI", "BasinFusion", "BasinIO"],
                    exclude: ["__Snapshots__"]),
        .testTarget(name: "EndToEndTests", dependencies: ["BasinTestSupport", "basin"]),
    ],
    swiftLanguageModes: [.v6]
)
