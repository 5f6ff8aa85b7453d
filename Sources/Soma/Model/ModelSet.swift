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

    /// Loads every module from `directory`: compiled `*.somamodel` files when the directory has them
    /// (see `CompiledModel`), otherwise the TSV source form (the layout of Fixtures/models).
    /// `precision` converts the weights at load; nil keeps what the files hold.
    public static func load(from directory: URL, precision: WeightTable.Precision? = nil) throws -> ModelSet {
        let set = try isCompiled(directory) ? loadCompiled(from: directory) : loadSources(from: directory)
        guard let precision else { return set }
        return set.converted(to: precision)
    }

    public static func isCompiled(_ directory: URL) -> Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent(CompiledModel.fileName(.emotion)).path)
    }

    /// One module's model from `directory`, compiled or source.
    public static func loadModule(_ module: Module, from directory: URL) throws -> ModuleModel {
        if isCompiled(directory) {
            return try CompiledModel.load(directory.appendingPathComponent(CompiledModel.fileName(module)), expecting: module).0
        }
        return try ModelSource.load(module, from: directory)
    }

    public static func loadCompiled(from directory: URL) throws -> ModelSet {
        func one(_ m: Module) throws -> ModuleModel {
            try CompiledModel.load(directory.appendingPathComponent(CompiledModel.fileName(m)), expecting: m).0
        }
        return try ModelSet(
            emotion: one(.emotion), reasoning: one(.reasoning), values: one(.values), theoryOfMind: one(.theoryOfMind), narrative: one(.narrative))
    }

    public func converted(to precision: WeightTable.Precision) -> ModelSet {
        ModelSet(
            emotion: emotion.converted(to: precision), reasoning: reasoning.converted(to: precision), values: values.converted(to: precision),
            theoryOfMind: theoryOfMind.converted(to: precision), narrative: narrative.converted(to: precision)
        )
    }

    public static func loadSources(from directory: URL) throws -> ModelSet {
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
        var hash = FNV1a()
        for m in Module.allCases { hash.mix(self[m].checksum) }
        return "soma-" + String(hash.value, radix: 16)
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
