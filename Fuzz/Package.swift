// swift-tools-version: 6.1
import Foundation
import PackageDescription

// libFuzzer targets for Soma's own parsers (scripts/fuzz.sh, `make fuzz`). A package of its own
// because a fuzz executable has no `main` (libFuzzer supplies it): in the root package it would
// break the normal `swift build`.
//
// Build (scripts/fuzz.sh does this):
//   swift build -c release --scratch-path .build-fuzz \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -enable-testing
//
// The sanitizer flags are given on the command line, for the whole graph, and not as unsafeFlags
// of the targets below: the code under test is the root package's Soma and SomaHTTP, whose
// manifest must not carry fuzzing flags, and only -Xswiftc reaches them. Without coverage
// instrumentation in Soma, libFuzzer would be blind exactly where it should look. The whole
// graph builds this way (no macros or build plugins among the dependencies), so there is no
// need for a split `-sanitize-coverage` setup; the price is that NIO, Hummingbird and the other
// dependencies are instrumented too (slower build, some coverage noise). `-parse-as-library`
// keeps the fuzz targets' files from being top-level code; `-enable-testing` lets them (and
// FuzzInput) `@testable import` Soma's and SomaHTTP's internals. `-c release`: the analysers are
// far faster optimised (executions per second), and overflow checks stay on; CI's short run
// builds debug instead, for half the build time (scripts/fuzz.sh, FUZZ_CONFIG).

// The root package's identity is the name of the folder it is checked out in.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

/// As in the root package: the same upcoming features as the code the shared file is also built with.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    // Tests/Unit/FuzzCorpusTests.swift (FuzzInput) leaves its Swift Testing suite out under this.
    .define("SOMA_FUZZ"),
]

let fuzzTarget: (String) -> Target = { name in
    .executableTarget(
        name: name,
        dependencies: [
            "FuzzInput",
            "FuzzEntry",
            .product(name: "Soma", package: root),
        ],
        path: "Sources/\(name)",
        swiftSettings: strictSettings
    )
}

let package = Package(
    name: "SomaFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.24.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.3.0"),
    ],
    targets: [
        // The per-input code: a symlink to Tests/Unit/FuzzCorpusTests.swift, which the unit tests
        // compile too (one copy of each target's logic for the fuzzers and the corpus regression test).
        .target(
            name: "FuzzInput",
            dependencies: [
                .product(name: "Soma", package: root),
                .product(name: "SomaHTTP", package: root),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Sources/FuzzInput",
            swiftSettings: strictSettings
        ),
        // The `<Module>_main` symbols SwiftPM's link of an executable expects (see entry.c).
        .target(name: "FuzzEntry", path: "Sources/FuzzEntry"),
        fuzzTarget("FuzzText"),
        fuzzTarget("FuzzModel"),
        fuzzTarget("FuzzJSON"),
        fuzzTarget("FuzzCursor"),
        fuzzTarget("FuzzIdempotency"),
    ],
    swiftLanguageModes: [.v6]
)
