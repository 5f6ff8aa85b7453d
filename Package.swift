// swift-tools-version: 6.1
import PackageDescription

/// Compiler settings shared by every target of ours.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Soma",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Soma", targets: ["Soma"]),
        .library(name: "SomaHTTP", targets: ["SomaHTTP"]),
        .executable(name: "soma", targets: ["SomaCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .target(
            name: "Soma",
            path: "Sources/Soma",
            swiftSettings: strictSettings
        ),
        .target(
            name: "SomaHTTP",
            dependencies: ["Soma"],
            path: "Sources/SomaHTTP",
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "SomaCLI",
            dependencies: [
                "Soma",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/soma",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "UnitTests",
            dependencies: ["Soma", "SomaHTTP"],
            path: "Tests/Unit",
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
