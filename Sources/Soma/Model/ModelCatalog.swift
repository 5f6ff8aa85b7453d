public import Foundation

/// What a serving instance knows about its models without holding them: where they come from,
/// each module's version (its checksum), precision, size and recorded held-out accuracy.
///
/// Built once at start-up by loading every module (which proves the models are loadable, the
/// readiness condition); the models themselves then live in the lazy `ModelRegistry`, whose loader
/// this catalog provides, so a reload after an idle unload yields the same checksum and the cache
/// keys stay valid.
public struct ModelCatalog: Sendable {
    public struct Info: Sendable, Equatable {
        public var module: Module
        /// The model's checksum in hex: part of every cache key of the module.
        public var version: String
        public var precision: WeightTable.Precision
        public var patterns: Int
        public var bytes: Int
        /// Held-out accuracy recorded in a compiled model file, `nil` for source models.
        public var accuracy: Float?
    }

    /// Where models are loaded from; `nil` for a catalog over models already in memory.
    public let directory: URL?
    private let resident: ModelSet?
    /// Weights are converted to this precision at load (`nil` keeps what the files hold).
    public let precision: WeightTable.Precision?
    public let modules: [Module: Info]
    /// One string for the whole set, derived from the per-module checksums (`ModelSet.version`).
    public let version: String

    /// Loads every module from `directory` once to learn its version.
    public init(directory: URL, precision: WeightTable.Precision?) throws {
        try self.init(directory: directory, resident: nil, precision: precision)
    }

    /// A catalog over models already loaded (tests, embedding): the registry's loader hands these out.
    public init(models: ModelSet) throws {
        try self.init(directory: nil, resident: models, precision: nil)
    }

    private init(directory: URL?, resident: ModelSet?, precision: WeightTable.Precision?) throws {
        self.directory = directory
        self.resident = resident
        self.precision = precision
        var infos: [Module: Info] = [:]
        var hash = FNV1a()
        for module in Module.allCases {
            let model = try resident?[module] ?? Self.load(module, from: directory!, precision: precision)
            var accuracy: Float?
            if let directory, ModelSet.isCompiled(directory) {
                let url = directory.appendingPathComponent(CompiledModel.fileName(module))
                accuracy = try CompiledModel.header(of: Data(contentsOf: url, options: .alwaysMapped), origin: url.path).accuracy
            }
            infos[module] = Info(
                module: module,
                version: String(model.checksum, radix: 16),
                precision: model.weights.precision,
                patterns: model.patterns.count,
                bytes: CompiledModel.encode(model).count,
                accuracy: accuracy
            )
            hash.mix(model.checksum)
        }
        modules = infos
        version = "soma-" + String(hash.value, radix: 16)
    }

    public subscript(module: Module) -> Info { modules[module]! }

    /// Loads one module as this catalog does: the registry's loader.
    public func load(_ module: Module) throws -> ModuleModel {
        if let resident { return resident[module] }
        return try Self.load(module, from: directory!, precision: precision)
    }

    private static func load(_ module: Module, from directory: URL, precision: WeightTable.Precision?) throws -> ModuleModel {
        let model = try ModelSet.loadModule(module, from: directory)
        guard let precision, model.weights.precision != precision else { return model }
        return model.converted(to: precision)
    }
}
