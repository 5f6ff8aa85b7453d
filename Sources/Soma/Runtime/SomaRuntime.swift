import Foundation
public import Logging
public import ServiceLifecycle

/// The composition root: one Soma instance's engine, caches, limiter, store with its outbox,
/// entries, profiles and warmer, built from a `RuntimeConfiguration`, with the Services that keep
/// them running (docs/ARCHITECTURE.md §2).
///
/// Front ends hold a runtime and call it: the HTTP layer (`SomaHTTP`), `soma warm-cache` and
/// `soma migrate` build the same runtime, so every policy (durability, failover, caching, rate
/// limits) lives here once.
///
/// ```swift
/// let runtime = try await SomaRuntime.make(configuration: RuntimeConfiguration(settings: Settings()))
/// let group = ServiceGroup(services: runtime.services, logger: logger)
/// ```
public struct SomaRuntime: Sendable {
    public let configuration: RuntimeConfiguration
    public let metrics: SomaMetrics
    /// Analysis with rate limits and the contract's refusals.
    public let analysis: Analysis
    public let entries: EntryService
    public let profiles: ProfileService
    public let warmer: CacheWarmer
    /// Replays the outbox into PostgreSQL (only with `DATABASE_URL`).
    public let replayer: OutboxReplayer?
    /// Background work: idle-model sweeps, limiter and cache pruning.
    public let maintenance: MaintenanceService
    /// Purges this instance's caches of users erased through other instances (only with a
    /// shared store).
    public let erasures: ErasureFollower?
    let redis: RedisClient?
    let postgres: PostgresClient?

    /// The serving path of analyses (cache layers, admission, degradation).
    public var service: AnalysisService { analysis.service }
    public var storage: EntryStorage { entries.storage }
    public var store: any Store { entries.storage.store }
    public var cache: TieredCache { analysis.service.cache }

    /// In start order; graceful shutdown runs them in reverse, so the clients close last, after
    /// the replayer's final flush. A front end appends its own (the HTTP server, drain) after these.
    public var services: [any Service] {
        var list: [any Service] = []
        if let redis { list.append(redis) }
        if let postgres { list.append(postgres) }
        if let replayer { list.append(replayer) }
        list.append(maintenance)
        if let erasures { list.append(erasures) }
        return list
    }

    /// Builds the runtime. Fails when the models cannot be loaded or the state directory or the
    /// embedded store is not usable: an instance that cannot serve does not start. Redis and
    /// PostgreSQL being down is not fatal: the instance serves on its fallbacks.
    ///
    /// - Parameters:
    ///   - store: a store to use instead of the configured one (tests).
    ///   - catalog: the models; by default loaded from `configuration.modelDirectory`.
    ///   - beforeModule: an instrumentation hook for tests (see `AnalysisService.Configuration`).
    public static func make(
        configuration: RuntimeConfiguration,
        metrics: SomaMetrics = SomaMetrics(),
        logger: Logger = Logger(label: "soma"),
        store: (any Store)? = nil,
        catalog: ModelCatalog? = nil,
        clock: any Clock<Duration> = ContinuousClock(),
        beforeModule: (@Sendable (_ user: String, _ module: Module) async -> Void)? = nil
    ) async throws -> SomaRuntime {
        try FileManager.default.createDirectory(at: configuration.stateDirectory, withIntermediateDirectories: true)
        let catalog = try catalog ?? ModelCatalog(directory: configuration.modelDirectory, precision: configuration.modelPrecision)
        let registry = try await loadModels(catalog, configuration: configuration, metrics: metrics, clock: clock)

        let sessions = SessionManager(configuration: configuration.admission, clock: clock)
        let local = SlidingWindowRateLimiter(policy: configuration.tiers, clock: clock)
        var redis: (client: RedisClient, breaker: CircuitBreaker, cache: RedisCache, fallback: SQLiteCache)?
        if let url = configuration.redisURL {
            let client = try RedisClient(
                url: url, poolSize: configuration.redisPoolSize,
                connectTimeout: configuration.redisTimeout, commandTimeout: configuration.redisTimeout,
                clientName: "soma-\(configuration.instanceID)")
            let breaker = dependencyBreaker("redis", configuration.redisBreaker, metrics: metrics, logger: logger, clock: clock)
            // The fallback starts empty: what it held was indexed per user only in the memory of
            // the process that wrote it, so an erasure could no longer find it.
            let fallbackPath = configuration.stateDirectory.appendingPathComponent("cache.sqlite").path
            for suffix in ["", "-wal", "-shm", "-journal"] { try? FileManager.default.removeItem(atPath: fallbackPath + suffix) }
            let fallback = try SQLiteCache(path: fallbackPath, maxBytes: configuration.fallbackCacheBytes)
            redis = (client, breaker, RedisCache(client: client), fallback)
            do { try await client.ping() } catch {
                logger.warning("redis is not reachable at start; serving on the local fallbacks", metadata: ["soma.error": .string("\(error)")])
            }
        }
        let cache = TieredCache(
            // One L2 call, pool wait included, within the Redis timeout: a hung Redis (docs/OPERATIONS.md §9).
            configuration: .init(
                ttl: configuration.cacheTTL, userTTL: configuration.userCacheTTL, callTimeout: redis.map { _ in configuration.redisTimeout }),
            l1: L1Cache(configuration: .init(maxBytes: configuration.cacheBytes, defaultTTL: configuration.cacheTTL), clock: clock),
            remote: redis?.cache, fallback: redis?.fallback, breaker: redis?.breaker,
            metrics: metrics
        )
        let limiter: any RateLimiter =
            redis.map {
                ResilientRateLimiter(
                    shared: RedisRateLimiter(client: $0.client, policy: configuration.tiers), local: local, breaker: $0.breaker, metrics: metrics,
                    callTimeout: configuration.redisTimeout)
            } ?? local
        let service = AnalysisService(
            catalog: catalog, registry: registry, sessions: sessions, cache: cache,
            configuration: .init(cacheScope: configuration.cacheScope, beforeModule: beforeModule),
            metrics: metrics
        )
        let analysis = Analysis(service: service, limiter: limiter, tiers: configuration.tiers, metrics: metrics)

        let storage: EntryStorage
        var postgres: PostgresClient?
        var replayer: OutboxReplayer?
        if let store {
            try await store.migrate()
            storage = .embedded(store)
        } else {
            switch configuration.storeKind {
            case .sqlite:
                let embedded = try SQLiteStore(path: configuration.resolvedSQLitePath, logger: logger)
                try await embedded.migrate()
                storage = .embedded(embedded)
            case .postgres:
                let client = try makePostgresClient(
                    configuration, applicationName: "soma-\(configuration.instanceID)", queryTimeout: configuration.databaseTimeout)
                let breaker = dependencyBreaker("postgres", configuration.databaseBreaker, metrics: metrics, logger: logger, clock: clock)
                let guarded = GuardedStore(PostgresStore(client: client, logger: logger), breaker: breaker)
                let outbox = try Outbox(
                    path: configuration.stateDirectory.appendingPathComponent("outbox.sqlite").path, target: Self.databaseTarget(configuration))
                metrics.set(SomaMetrics.Name.outboxPending, [], Double(outbox.pendingCount))
                metrics.set(SomaMetrics.Name.outboxHeld, [], Double(outbox.heldCount))
                replayer = OutboxReplayer(outbox: outbox, store: guarded, breaker: nil, metrics: metrics, logger: logger)
                postgres = client
                storage = .remote(guarded, outbox: outbox)
                do {
                    try await guarded.migrate()
                    // Known from the start, the identity stamps what is queued; the replayer checks it again before replaying.
                    if let identity = try await guarded.identity() { OutboxReplayer.bind(outbox, to: identity, logger: logger) }
                } catch {
                    // Not fatal: entries queue in the outbox and the schema is migrated on the first call that reaches the database.
                    logger.warning("postgres is not reachable at start; entries queue in the outbox", metadata: ["soma.error": .string("\(error)")])
                }
            }
        }
        let profiles = ProfileService(store: storage.store, cache: cache, entryLimit: configuration.profileEntries)
        return SomaRuntime(
            configuration: configuration, metrics: metrics, analysis: analysis,
            entries: EntryService(storage: storage, analysis: analysis, cache: cache, metrics: metrics),
            profiles: profiles,
            warmer: CacheWarmer(service: service, profiles: profiles, metrics: metrics),
            replayer: replayer,
            maintenance: MaintenanceService(service: service, limiter: local, logger: logger),
            erasures: storage.outbox == nil ? nil : ErasureFollower(store: storage.store, outbox: storage.outbox, cache: cache, logger: logger),
            redis: redis?.client, postgres: postgres
        )
    }

    /// The configured store alone, for `soma migrate`: the same choice `make` makes, with a
    /// client sized for one long statement.
    public static func withStore<T>(
        _ configuration: RuntimeConfiguration, logger: Logger = Logger(label: "soma"),
        _ body: (any Store, _ target: String) async throws -> T
    ) async throws -> T {
        switch configuration.storeKind {
        case .sqlite:
            try FileManager.default.createDirectory(at: configuration.stateDirectory, withIntermediateDirectories: true)
            return try await body(try SQLiteStore(path: configuration.resolvedSQLitePath, logger: logger), configuration.resolvedSQLitePath)
        case .postgres:
            var single = configuration
            single.databasePoolSize = 1
            let client = try makePostgresClient(single, applicationName: "soma-migrate", queryTimeout: .seconds(60))
            defer { client.close() }
            let target = (try? PostgresURL(configuration.databaseURL ?? "").description) ?? "postgresql"
            return try await body(PostgresStore(client: client, logger: logger), target)
        }
    }

    /// The configured database as the outbox names it: host, port and database, no credentials.
    static func databaseTarget(_ configuration: RuntimeConfiguration) -> String {
        guard let url = try? PostgresURL(configuration.databaseURL ?? "") else { return configuration.databaseURL.map { _ in "unparsable" } ?? "" }
        return "\(url.host):\(url.port)/\(url.database ?? url.user ?? "")"
    }

    private static func makePostgresClient(_ configuration: RuntimeConfiguration, applicationName: String, queryTimeout: Duration) throws -> PostgresClient {
        try PostgresClient(
            url: configuration.databaseURL ?? "", poolSize: configuration.databasePoolSize,
            connectTimeout: configuration.databaseTimeout, queryTimeout: queryTimeout,
            applicationName: applicationName)
    }

    private static func loadModels(_ catalog: ModelCatalog, configuration: RuntimeConfiguration, metrics: SomaMetrics, clock: any Clock<Duration>) async throws
        -> ModelRegistry
    {
        let registry = ModelRegistry(
            loader: { try catalog.load($0) },
            idleTimeout: configuration.modelIdleTimeout,
            clock: clock,
            sizeOf: { catalog[$0.module].bytes },
            onEvent: { event in
                switch event {
                case .loaded(let m, _):
                    metrics.increment(SomaMetrics.Name.modelLoads, [("module", m.rawValue), ("result", "ok")])
                    metrics.set(SomaMetrics.Name.modelLoaded, [("module", m.rawValue), ("precision", catalog[m].precision.rawValue)], 1)
                case .unloaded(let m):
                    metrics.set(SomaMetrics.Name.modelLoaded, [("module", m.rawValue), ("precision", catalog[m].precision.rawValue)], 0)
                case .loadFailed(let m, _):
                    metrics.increment(SomaMetrics.Name.modelLoads, [("module", m.rawValue), ("result", "failed")])
                }
            }
        )
        for module in Module.allCases {
            try await registry.load(module)
            let info = catalog[module]
            metrics.set(SomaMetrics.Name.modelBytes, [("module", module.rawValue)], Double(info.bytes))
            if let accuracy = info.accuracy {
                metrics.set(SomaMetrics.Name.modelAccuracy, [("module", module.rawValue)], Double(accuracy))
            }
        }
        return registry
    }

    /// A circuit breaker around one dependency: its state and transitions as metrics and log lines.
    private static func dependencyBreaker(
        _ dependency: String, _ settings: CircuitBreakerConfiguration, metrics: SomaMetrics, logger: Logger, clock: any Clock<Duration>
    ) -> CircuitBreaker {
        let breaker = CircuitBreaker(name: dependency, configuration: settings, clock: clock) { from, to in
            metrics.set(SomaMetrics.Name.circuitState, [("dependency", dependency)], Double(to.stateValue))
            metrics.increment(SomaMetrics.Name.circuitTransitions, [("dependency", dependency), ("to", to.description)])
            logger.warning("\(dependency) circuit breaker", metadata: ["soma.from": .string("\(from)"), "soma.to": .string("\(to)")])
        }
        metrics.set(SomaMetrics.Name.circuitState, [("dependency", dependency)], 0)
        return breaker
    }

    // MARK: Operations front ends call

    /// The caller's profile document (spends one unit of budget); `cached` says whether it came
    /// from a cache layer.
    /// With a `deadline`, a database that does not answer by then reads as unavailable.
    public func profile(caller: Caller, deadline: Duration? = nil) async throws -> (document: [UInt8], cached: Bool) {
        try await analysis.spend(caller, cost: 1)
        return try await analysis.bounded(by: deadline) { try await profiles.document(for: caller.user) }
    }

    /// Warms the caches; an overloaded instance refuses (`Refusal(.overloaded)`).
    public func warm(texts: [String], modules: [Module], users: Int, deadline: Duration) async throws -> CacheWarmer.Report {
        do {
            return try await warmer.warm(texts: CacheWarmer.rankedByFrequency(texts), modules: modules, users: users, deadline: deadline)
        } catch is AdmissionRefusal {
            throw Refusal(.overloaded, "the service is overloaded; warm later", retryAfter: .seconds(1))
        }
    }

    /// Creates or upgrades the store's schema.
    public func migrate() async throws { try await store.migrate() }

    /// Pool and outbox gauges, refreshed at each scrape.
    public func refreshGauges() {
        for tier in Tier.allCases { metrics.queueDepth(tier: tier, service.sessions.queuedCount(tier: tier)) }
        if let postgres {
            let pool = postgres.poolStats
            for (state, n) in [("open", pool.open), ("idle", pool.idle), ("leased", pool.leased), ("waiting", pool.waiting)] {
                metrics.set(SomaMetrics.Name.dbConnections, [("state", state)], Double(n))
            }
        }
        if let outbox = storage.outbox {
            metrics.set(SomaMetrics.Name.outboxPending, [], Double(outbox.pendingCount))
            metrics.set(SomaMetrics.Name.outboxHeld, [], Double(outbox.heldCount))
        }
        metrics.set(SomaMetrics.Name.cacheBytes, [("layer", "l1")], Double(cache.l1.bytes))
        metrics.set(SomaMetrics.Name.cacheEntries, [("layer", "l1")], Double(cache.l1.count))
    }
}

/// Periodic housekeeping: unload idle models, forget idle rate-limit users, drop expired cache
/// entries. Stops on graceful shutdown.
public struct MaintenanceService: Service {
    let service: AnalysisService
    let limiter: SlidingWindowRateLimiter
    let logger: Logger
    var interval: Duration = .seconds(10)

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                let unloaded = await service.sweep()
                if !unloaded.isEmpty {
                    logger.info("unloaded idle models", metadata: ["soma.modules": .string(unloaded.map(\.rawValue).joined(separator: ","))])
                }
                _ = limiter.pruneIdleUsers()
                _ = service.cache.l1.purgeExpired()
                _ = service.cache.index.prune()
            }
        }
    }
}
