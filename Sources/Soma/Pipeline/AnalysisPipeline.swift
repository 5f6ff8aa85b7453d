import Synchronization

/// The serving path of an analysis: models from the lazy `ModelRegistry`, work through the
/// dynamic `Batcher` on its worker pool, in tier order.
///
/// A request acquires the models of the modules it needs (so none is unloaded under it), is
/// queued by tier, and a worker runs it with its batch peers: normalise and tokenise once, then each
/// module. With batching off the caller's task does the work directly.
///
/// ```swift
/// let pipeline = AnalysisPipeline(registry: registry)
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { await pipeline.run() }
///     let results = try await pipeline.analyze("I hoped it would work.", tier: .premium)
/// }
/// ```
public final class AnalysisPipeline: Sendable {
    public struct Job: Sendable {
        public var text: String
        public var analyzers: [ModuleAnalyzer]
    }

    public let registry: ModelRegistry
    public let batcher: Batcher<Job, AnalysisResults>
    /// Analysers built once per loaded model (keyed by the model's checksum).
    private let analyzers = Mutex<[Module: (checksum: UInt64, analyzer: ModuleAnalyzer)]>([:])

    public init(registry: ModelRegistry, batching: Batcher<Job, AnalysisResults>.Configuration = .init(), clock: any Clock<Duration> = ContinuousClock()) {
        self.registry = registry
        let pipeline = TextPipeline()
        batcher = Batcher(configuration: batching, clock: clock) { jobs in
            jobs.map { job in
                let doc = pipeline.process(job.text)
                var results = AnalysisResults()
                for a in job.analyzers { a.analyze(doc, into: &results) }
                return results
            }
        }
    }

    /// Runs the batcher's workers until cancelled.
    public func run() async {
        await batcher.run()
    }

    /// Analyses `text` with the chosen modules (all when empty), queued at `tier`.
    public func analyze(_ text: String, modules: Set<Module> = [], tier: Tier = .standard) async throws -> AnalysisResults {
        let chosen = (modules.isEmpty ? Set(Module.allCases) : modules).sorted()
        var acquired: [Module] = []
        var outcome: Result<AnalysisResults, any Error>
        do {
            var list: [ModuleAnalyzer] = []
            for m in chosen {
                let model = try await registry.acquire(m)
                acquired.append(m)
                list.append(analyzer(for: model))
            }
            outcome = .success(try await batcher.submit(Job(text: text, analyzers: list), tier: tier))
        } catch {
            outcome = .failure(error)
        }
        for m in acquired { await registry.release(m) }
        return try outcome.get()
    }

    /// Unloads idle models (see `ModelRegistry.sweep`) and forgets their analysers, so the memory
    /// really goes.
    @discardableResult
    public func sweep() async -> [Module] {
        let unloaded = await registry.sweep()
        analyzers.withLock { cache in for m in unloaded { cache[m] = nil } }
        return unloaded
    }

    /// Unloads one model now unless it is in use (the admin action).
    public func unload(_ module: Module) async -> Bool {
        guard await registry.unload(module) else { return false }
        analyzers.withLock { $0[module] = nil }
        return true
    }

    /// Sweeps every `interval` until cancelled.
    public func runIdleSweeper(interval: Duration, clock: any Clock<Duration> = ContinuousClock()) async {
        while !Task.isCancelled {
            do { try await clock.sleep(for: interval) } catch { return }
            await sweep()
        }
    }

    func analyzer(for model: ModuleModel) -> ModuleAnalyzer {
        if let cached = analyzers.withLock({ $0[model.module] }), cached.checksum == model.checksum {
            return cached.analyzer
        }
        // Built outside the lock: two racing first requests may both build it; either result is right.
        let built = ModuleAnalyzer(model: model)
        analyzers.withLock { $0[model.module] = (model.checksum, built) }
        return built
    }
}
