public import Foundation

/// The five modules' models, loaded together from one directory.
public struct ModelSet: Sendable {
    public let emotion: ModuleModel
    public let reasoning: ModuleModel
    public let values: ModuleModel
    public let theoryOfMind: ModuleModel
    public let narrative: ModuleModel

    public init(emotion: ModuleModel, reasoning: ModuleModel, values: ModuleModel, theoryOfMind: ModuleModel, narrative: ModuleModel) {
        self.emotion = emotion
        self.reasoning = reasoning
        self.values = values
        self.theoryOfMind = theoryOfMind
        self.narrative = narrative
    }

    /// Loads every module's source form from `directory` (the layout of Fixtures/models).
    public static func load(from directory: URL) throws -> ModelSet {
        try ModelSet(
            emotion: ModelSource.load(.emotion, from: directory),
            reasoning: ModelSource.load(.reasoning, from: directory),
            values: ModelSource.load(.values, from: directory),
            theoryOfMind: ModelSource.load(.theoryOfMind, from: directory),
            narrative: ModelSource.load(.narrative, from: directory)
        )
    }

    public subscript(module: Module) -> ModuleModel {
        switch module {
        case .emotion: emotion
        case .reasoning: reasoning
        case .values: values
        case .theoryOfMind: theoryOfMind
        case .narrative: narrative
        }
    }

    /// One string for the whole set, derived from the per-module checksums.
    public var version: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for m in Module.allCases {
            var c = self[m].checksum
            for _ in 0..<8 {
                hash ^= c & 0xFF
                hash &*= 0x0000_0100_0000_01B3
                c >>= 8
            }
        }
        return "soma-" + String(hash, radix: 16)
    }

    /// Where models are found when nobody says: `SOMA_MODEL_DIR`, then `./Fixtures/models`, then the
    /// source tree this binary was built from.
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let configured = environment["SOMA_MODEL_DIR"], !configured.isEmpty {
            return URL(fileURLWithPath: configured, isDirectory: true)
        }
        let local = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Fixtures/models", isDirectory: true)
        if FileManager.default.fileExists(atPath: local.path) { return local }
        return sourceRoot.appendingPathComponent("Fixtures/models", isDirectory: true)
    }

    /// The package root this file was compiled in.
    public static var sourceRoot: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // Model
            .deletingLastPathComponent()  // Soma
            .deletingLastPathComponent()  // Sources
            .deletingLastPathComponent()
    }
}
