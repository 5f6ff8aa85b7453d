// swift-tools-version: 6.1
import Foundation
import PackageDescription

// The root package's identity is the name of the folder it is checked out in.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

let benchmarkTarget: (String) -> Target = { name in
    .executableTarget(
        name: name,
        dependencies: [
            "BenchmarkSupport",
            .product(name: "Soma", package: root),
            .product(name: "Benchmark", package: "benchmark"),
        ],
        path: "Benchmarks/\(name)",
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    )
}

let package = Package(
    name: "SomaBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // Texts and model sets shared by the suites.
        .target(name: "BenchmarkSupport", dependencies: [.product(name: "Soma", package: root)], path: "Sources/BenchmarkSupport"),
        benchmarkTarget("ModuleBenchmarks"),
        benchmarkTarget("ServingBenchmarks"),
        // The engine's regression gate: CPU per run as a ratio to a same-run reference (make bench).
        .executableTarget(
            name: "EngineGate", dependencies: ["BenchmarkSupport", .product(name: "Soma", package: root)], path: "Sources/EngineGate"),
        // A Hummingbird hello-world: the HTTP baseline of scripts/bench-http.sh.
        .executableTarget(name: "HelloServer", dependencies: [.product(name: "Hummingbird", package: "hummingbird")], path: "Sources/HelloServer"),
    ],
    swiftLanguageModes: [.v6]
)
