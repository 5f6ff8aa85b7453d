import Synchronization

/// Why a response is degraded (the `degraded_reason` field and the `soma_degraded_total` label).
public enum DegradedReason: String, Sendable, Hashable {
    /// The deadline passed before the full pipeline finished (waiting or running).
    case deadline
    /// The full pipeline failed (e.g. a model could not be loaded).
    case error
}

/// One analysis to serve.
public struct AnalysisRequest: Sendable {
    public var text: String
    /// The modules asked for, at least one.
    public var modules: [Module]
    public var user: String
    public var tier: Tier
    /// On the service's time line (`AnalysisService.now() + timeout`).
    public var deadline: Duration

    public init(text: String, modules: [Module], user: String, tier: Tier, deadline: Duration) {
        self.text = text
        self.modules = modules
        self.user = user
        self.tier = tier
        self.deadline = deadline
    }
}

/// What the service answered: per-module result JSON, where each came from, and timings.
public struct AnalysisOutcome: Sendable {
    /// The result object of each module that has one, as JSON (the value under `results.<module>`).
    public var results: [Module: [UInt8]] = [:]
    /// One entry per requested module.
    public var cache: [Module: CacheSource] = [:]
    public var degraded: DegradedReason?
    /// Milliseconds: `total`, `queue` (waiting for a worker), and one per module computed.
    public var timings: [(name: String, milliseconds: Double)] = []

    /// True only when every requested module was a cache hit.
    public var cached: Bool { !cache.isEmpty && cache.values.allSatisfy { $0 != .miss } }

    /// Writes the `results` object (keys sorted, as the rest of the API).
    public func writeResults(to w: inout JSONWriter) {
        w.beginObject()
        for module in results.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
            w.key(module.rawValue)
            w.raw(results[module]!)
        }
        w.endObject()
    }

    /// The `results` object alone, as stored with an entry.
    public func resultsJSON() -> [UInt8] {
        var w = JSONWriter()
        writeResults(to: &w)
        return w.bytes
    }
}

/// The serving path of one analysis request, without HTTP (docs/ARCHITECTURE.md §3):
/// normalise → L1 lookup per module → on a miss, admission by the session manager (tier order,
/// bounds, shedding) → modules run, emotion first, checking the deadline between modules → results
/// written back to the cache. When the deadline passes, or the pipeline fails, the degradation chain
/// answers: what was computed or cached, plus the basic response (emotion, the cheapest model),
/// marked degraded.
///
/// Throws `AdmissionRefusal` (not `.expired`: an expired wait degrades) when the request is
/// refused or shed, `AnalysisServiceError` when not even the basic answer could be made.
public final class AnalysisService: Sendable {
    public struct Configuration: Sendable {
        /// Whether analysis entries are shared by all users (content-addressed, the default; a
        /// response still reports only the caller's own hits and the total time) or kept per
        /// user (`SOMA_CACHE_SCOPE=user`: nothing shared, so not even the time a shared hit saves
        /// can tell a user that someone else sent the same text).
        public enum CacheScope: String, Sendable {
            case shared, user
        }

        public var cacheScope: CacheScope = .shared
        /// Called before each module runs on the full path: an instrumentation point for tests and
        /// fault injection (delay a module, block until released). `nil` in production.
        public var beforeModule: (@Sendable (_ user: String, _ module: Module) async -> Void)?

        public init(
            cacheScope: CacheScope = .shared,
            beforeModule: (@Sendable (_ user: String, _ module: Module) async -> Void)? = nil
        ) {
            self.cacheScope = cacheScope
            self.beforeModule = beforeModule
        }
    }

    public let catalog: ModelCatalog
    public let registry: ModelRegistry
    public let sessions: SessionManager
    public let cache: TieredCache
    private let configuration: Configuration
    private let metrics: SomaMetrics
    private let textPipeline = TextPipeline()
    private let analyzers = Mutex<[Module: (checksum: UInt64, analyzer: ModuleAnalyzer)]>([:])

    public init(
        catalog: ModelCatalog,
        registry: ModelRegistry,
        sessions: SessionManager,
        cache: TieredCache,
        configuration: Configuration = Configuration(),
        metrics: SomaMetrics
    ) {
        self.catalog = catalog
        self.registry = registry
        self.sessions = sessions
        self.configuration = configuration
        self.metrics = metrics
        self.cache = cache
    }

    /// Now on the time line deadlines are given in.
    public func now() -> Duration { sessions.now() }

    /// The model version string of the responses.
    public var modelVersion: String { catalog.version }

    /// The cache key of `module`'s result for a normalised text; with the user scope, the user's
    /// tag is part of the key (as a suffix of the version part, so the key layout stays the same
    /// and no user id is in it).
    public func cacheKey(_ module: Module, normalized: String, user: String) -> CacheKey {
        cacheKey(module, text: CacheKey.TextDigest(normalizedText: normalized), user: UserTag(user))
    }

    /// The same from the text's digest and the user's tag, each computed once per request.
    func cacheKey(_ module: Module, text: CacheKey.TextDigest, user: UserTag) -> CacheKey {
        let version = catalog[module].version
        switch configuration.cacheScope {
        case .shared: return CacheKey.analysis(module: module, modelVersion: version, text: text)
        case .user: return CacheKey.analysis(module: module, modelVersion: version + "@" + user.hex, text: text)
        }
    }

    public func analyze(_ request: AnalysisRequest) async throws -> AnalysisOutcome {
        let start = now()
        var outcome = try await serve(request, start: start)
        let total = ("total", milliseconds(now() - start))
        switch configuration.cacheScope {
        case .shared:
            // Which modules ran and how long the queue took depend on whether someone else sent
            // the text before: the shared scope shows the total only (the rest is in metrics).
            outcome.timings = [total]
        case .user:
            outcome.timings.insert(total, at: 0)
        }
        return outcome
    }

    private func serve(_ request: AnalysisRequest, start: Duration) async throws -> AnalysisOutcome {
        let normalized = TextNormalizer.normalize(request.text)
        var outcome = AnalysisOutcome()
        var missing: [Module] = []
        var keys: [Module: CacheKey] = [:]
        // The text is hashed once for all the request's modules, and the user tagged once.
        let digest = CacheKey.TextDigest(normalizedText: normalized)
        let userTag = UserTag(request.user)
        func key(_ module: Module) -> CacheKey {
            if let known = keys[module] { return known }
            let made = cacheKey(module, text: digest, user: userTag)
            keys[module] = made
            return made
        }
        let hits = await cache.get(request.modules.map(key), for: userTag)
        for (module, hit) in zip(request.modules, hits) {
            if let hit {
                outcome.results[module] = hit.value
                // Served from the shared cache either way, but reported as a hit only when the
                // caller's own history explains it: nobody learns what another user sent.
                outcome.cache[module] = hit.seen || configuration.cacheScope == .user ? hit.source : .miss
            } else {
                outcome.cache[module] = .miss
                missing.append(module)
            }
        }
        guard !missing.isEmpty else { return outcome }

        // Computed results, written to the cache layers once the answer is known.
        var fills: [(key: CacheKey, value: [UInt8])] = []
        // Emotion first: it is the basic response if the deadline cuts the rest short.
        missing.sort { ($0 == .emotion ? 0 : 1, $0) < ($1 == .emotion ? 0 : 1, $1) }
        do {
            if now() >= request.deadline { throw AdmissionRefusal(.expired, retryAfter: .zero) }
            try await sessions.withAdmission(user: request.user, tier: request.tier, deadline: request.deadline) {
                outcome.timings.append(("queue", milliseconds(now() - start)))
                let doc = textPipeline.process(normalized: normalized)
                for module in missing {
                    if now() >= request.deadline {
                        outcome.degraded = .deadline
                        break
                    }
                    let json = try await run(module, on: doc, into: &outcome, hookUser: request.user)
                    fills.append((key(module), json))
                }
            }
            recordQueueDepth()
        } catch let refusal as AdmissionRefusal where refusal.reason == .expired {
            recordQueueDepth()
            try Task.checkCancellation()
            outcome.degraded = .deadline
        } catch let refusal as AdmissionRefusal {
            recordQueueDepth()
            throw refusal
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            outcome.degraded = .error
        }

        if let reason = outcome.degraded {
            metrics.degraded(reason: reason.rawValue)
            if outcome.results[.emotion] == nil {
                // The basic response: emotion, outside the queue (it costs well under a millisecond).
                do {
                    let doc = textPipeline.process(normalized: normalized)
                    let json = try await run(.emotion, on: doc, into: &outcome, hookUser: nil)
                    fills.append((key(.emotion), json))
                    if outcome.cache[.emotion] == nil { outcome.cache[.emotion] = .miss }
                } catch {
                    if outcome.results.isEmpty { throw AnalysisServiceError(reason: reason) }
                }
            }
        }
        // A failing layer below L1 costs no answer: the tiered cache swallows its errors.
        await cache.set(fills)
        return outcome
    }

    /// Runs one module and records its result and timing; returns the result JSON.
    private func run(_ module: Module, on doc: Document, into outcome: inout AnalysisOutcome, hookUser user: String?) async throws -> [UInt8] {
        if let user, let before = configuration.beforeModule { await before(user, module) }
        // Holds the worker (admission measures it as service time); before the model is acquired,
        // so a cancelled sleep leaves nothing to release.
        if let hold = Slowdown.hold { try await Task.sleep(for: hold) }
        let model = try await registry.acquire(module)
        let started = now()
        var results = AnalysisResults()
        analyzer(for: model).analyze(doc, into: &results)
        await registry.release(module)
        let json = results.json(of: module)
        let elapsed = now() - started
        metrics.module(module, duration: elapsed)
        outcome.timings.append((module.rawValue, milliseconds(elapsed)))
        outcome.results[module] = json
        return json
    }

    private func recordQueueDepth() {
        for tier in Tier.allCases { metrics.queueDepth(tier: tier, sessions.queuedCount(tier: tier)) }
    }

    /// Unloads idle models and forgets their analysers.
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

    private func analyzer(for model: ModuleModel) -> ModuleAnalyzer {
        if let cached = analyzers.withLock({ $0[model.module] }), cached.checksum == model.checksum {
            return cached.analyzer
        }
        let built = ModuleAnalyzer(model: model)
        analyzers.withLock { $0[model.module] = (model.checksum, built) }
        return built
    }

    private func milliseconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return ((Double(s) * 1000 + Double(atto) / 1e15) * 1000).rounded() / 1000
    }
}

/// Not even the basic (degraded) answer could be made (HTTP 504 `deadline_exceeded`, or 500 when
/// the cause was an error).
public struct AnalysisServiceError: Error, Sendable, Equatable {
    public var reason: DegradedReason
}

extension AnalysisResults {
    /// The JSON of one module's result (the value under `results.<module>`).
    public func json(of module: Module) -> [UInt8] {
        var w = JSONWriter(capacity: 512)
        switch module {
        case .emotion: emotion?.write(to: &w)
        case .reasoning: reasoning?.write(to: &w)
        case .values: values?.write(to: &w)
        case .theoryOfMind: theoryOfMind?.write(to: &w)
        case .narrative: narrative?.write(to: &w)
        }
        return w.bytes
    }
}
