import Foundation
public import Hummingbird
public import Logging
public import Prometheus
public import ServiceLifecycle
public import Soma

/// One Soma instance, assembled: models, session manager, analysis service, store, rate limiter,
/// metrics, and the Hummingbird application with its routes (ARCHITECTURE §2–§4, §8).
///
/// `soma serve` runs `services` in one `ServiceGroup`; tests use `application` with
/// HummingbirdTesting (`.router` or `.live`).
public struct SomaServer: Sendable {
    public typealias App = Application<RouterResponder<SomaRequestContext>>

    public let configuration: ServerConfiguration
    public let application: App
    public let readiness: Readiness
    public let service: AnalysisService
    public let store: any Store
    /// Preloads frequent texts and active users' profiles (`soma warm-cache`).
    public let warmer: CacheWarmer
    public let prometheus: PrometheusCollectorRegistry
    /// Background work beside the server: idle-model sweeps, limiter and cache pruning.
    public let maintenance: MaintenanceService
    /// Turns the instance not-ready on graceful shutdown and waits `drainDelay` before the server
    /// stops accepting.
    public let drain: DrainService
    /// Replays the outbox into PostgreSQL (only with `DATABASE_URL`); stops after the server, so
    /// entries acknowledged by the last requests are flushed if the database answers.
    public let replayer: OutboxReplayer?
    /// The local outbox (only with `DATABASE_URL`).
    public let outbox: Outbox?

    /// Histogram buckets that resolve the fast path and the SLO (ARCHITECTURE §8).
    public static let latencyBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
    ]

    /// The services in start order; graceful shutdown runs them in reverse: drain first (not
    /// ready, wait), then the server (stop accepting, finish in-flight requests), then maintenance.
    public var services: [any Service] { [maintenance] + (replayer.map { [$0] } ?? []) + [application, drain] }

    /// Builds an instance. Fails when the models cannot be loaded or the state directory or the
    /// store is not usable: an instance that cannot serve does not start.
    ///
    /// - Parameters:
    ///   - store: the store to use; by default the embedded SQLite file in the state directory.
    ///   - catalog: the models; by default loaded from `configuration.modelDirectory`.
    ///   - beforeModule: an instrumentation hook for tests (see `AnalysisService.Configuration`).
    public static func make(
        configuration: ServerConfiguration,
        logger: Logger = Logger(label: "soma"),
        prometheus: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        store: (any Store)? = nil,
        catalog: ModelCatalog? = nil,
        clock: any Clock<Duration> = ContinuousClock(),
        beforeModule: (@Sendable (_ user: String, _ module: Module) async -> Void)? = nil,
        version: String = "dev"
    ) async throws -> SomaServer {
        try FileManager.default.createDirectory(at: configuration.stateDirectory, withIntermediateDirectories: true)

        var factory = PrometheusMetricsFactory(registry: prometheus)
        factory.defaultDurationHistogramBuckets = latencyBuckets
        let metrics = SomaMetrics(factory: factory)

        let catalog = try catalog ?? ModelCatalog(directory: configuration.modelDirectory, precision: configuration.modelPrecision)
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

        let sessions = SessionManager(configuration: configuration.admission, clock: clock)
        let local = SlidingWindowRateLimiter(policy: configuration.tiers, clock: clock)
        /// A circuit breaker around one dependency: its state and transitions as metrics and log lines.
        func dependencyBreaker(_ dependency: String, _ settings: CircuitBreakerConfiguration) -> CircuitBreaker {
            let breaker = CircuitBreaker(name: dependency, configuration: settings, clock: clock) { from, to in
                metrics.set(SomaMetrics.Name.circuitState, [("dependency", dependency)], Double(to.stateValue))
                metrics.increment(SomaMetrics.Name.circuitTransitions, [("dependency", dependency), ("to", to.description)])
                logger.warning("\(dependency) circuit breaker", metadata: ["soma.from": .string("\(from)"), "soma.to": .string("\(to)")])
            }
            metrics.set(SomaMetrics.Name.circuitState, [("dependency", dependency)], 0)
            return breaker
        }
        var redis: (client: RedisClient, breaker: CircuitBreaker, cache: RedisCache, fallback: SQLiteCache)?
        if let url = configuration.redisURL {
            let client = try RedisClient(
                url: url, poolSize: configuration.redisPoolSize,
                connectTimeout: configuration.redisTimeout, commandTimeout: configuration.redisTimeout,
                clientName: "soma-\(configuration.instanceID)")
            let breaker = dependencyBreaker("redis", configuration.redisBreaker)
            let fallback = try SQLiteCache(
                path: configuration.stateDirectory.appendingPathComponent("cache.sqlite").path,
                maxBytes: configuration.fallbackCacheBytes)
            redis = (client, breaker, RedisCache(client: client), fallback)
            do { try await client.ping() } catch {
                // Not fatal: the instance serves on its fallbacks and the breaker finds Redis when it returns.
                logger.warning("redis is not reachable at start; serving on the local fallbacks", metadata: ["soma.error": .string("\(error)")])
            }
        }
        let cache = TieredCache(
            configuration: .init(ttl: configuration.cacheTTL, userTTL: configuration.userCacheTTL),
            l1: L1Cache(configuration: .init(maxBytes: configuration.cacheBytes, defaultTTL: configuration.cacheTTL), clock: clock),
            remote: redis?.cache, fallback: redis?.fallback, breaker: redis?.breaker,
            metrics: metrics
        )
        let limiter: any RateLimiter = redis.map {
            ResilientRateLimiter(shared: RedisRateLimiter(client: $0.client, policy: configuration.tiers), local: local, breaker: $0.breaker, metrics: metrics)
        } ?? local
        let service = AnalysisService(
            catalog: catalog, registry: registry, sessions: sessions, cache: cache,
            configuration: .init(cacheScope: configuration.cacheScope, beforeModule: beforeModule),
            metrics: metrics
        )
        var postgres: (client: PostgresClient, store: GuardedStore, outbox: Outbox, replayer: OutboxReplayer)?
        let chosenStore: any Store
        if let store {
            chosenStore = store
            try await store.migrate()
        } else if let url = configuration.databaseURL {
            let client = try PostgresClient(
                url: url, poolSize: configuration.databasePoolSize,
                connectTimeout: configuration.databaseTimeout, queryTimeout: configuration.databaseTimeout,
                applicationName: "soma-\(configuration.instanceID)")
            let breaker = dependencyBreaker("postgres", configuration.databaseBreaker)
            let guarded = GuardedStore(PostgresStore(client: client, logger: logger), breaker: breaker)
            let outbox = try Outbox(path: configuration.stateDirectory.appendingPathComponent("outbox.sqlite").path)
            metrics.set(SomaMetrics.Name.outboxPending, [], Double(outbox.pendingCount))
            let replayer = OutboxReplayer(outbox: outbox, store: guarded, breaker: nil, metrics: metrics, logger: logger)
            postgres = (client, guarded, outbox, replayer)
            chosenStore = guarded
            do { try await guarded.migrate() } catch {
                // Not fatal: entries queue in the outbox and the schema is migrated on the first call that reaches the database.
                logger.warning("postgres is not reachable at start; entries queue in the outbox", metadata: ["soma.error": .string("\(error)")])
            }
        } else {
            let embedded = try SQLiteStore(path: configuration.resolvedSQLitePath, logger: logger)
            try await embedded.migrate()
            chosenStore = embedded
        }
        let store = chosenStore
        let readiness = Readiness()
        let activeUsers = ActiveUsers(clock: clock)
        let inFlight = InFlightCounter(metrics: metrics)
        let process = ProcessMetrics(registry: prometheus, stateDirectory: configuration.stateDirectory)

        let database = postgres
        let profiles = ProfileService(store: store, cache: cache, builder: ProfileBuilder(), entryLimit: configuration.profileEntries)
        let warmer = CacheWarmer(service: service, profiles: profiles, metrics: metrics)
        let api = SomaAPI(
            configuration: configuration, service: service, store: store, outbox: postgres?.outbox, limiter: limiter, metrics: metrics,
            profiles: profiles, warmer: warmer, readiness: readiness, activeUsers: activeUsers,
            startedAt: .now, version: version,
            metricsText: { degraded in
                process.refresh()
                metrics.set(SomaMetrics.Name.activeUsers, [], Double(activeUsers.count()))
                // 2 ok, 1 degraded (ready, but Redis or the store is served by a fallback or down, as
                // /health says), 0 not ready (starting or draining).
                metrics.set(SomaMetrics.Name.instanceStatus, [], readiness.current != .ready ? 0 : degraded ? 1 : 2)
                for tier in Tier.allCases { metrics.queueDepth(tier: tier, sessions.queuedCount(tier: tier)) }
                if let postgres = database {
                    let pool = postgres.client.poolStats
                    for (state, n) in [("open", pool.open), ("idle", pool.idle), ("leased", pool.leased), ("waiting", pool.waiting)] {
                        metrics.set(SomaMetrics.Name.dbConnections, [("state", state)], Double(n))
                    }
                    metrics.set(SomaMetrics.Name.outboxPending, [], Double(postgres.outbox.pendingCount))
                }
                metrics.set(SomaMetrics.Name.cacheBytes, [("layer", "l1")], Double(cache.l1.bytes))
                metrics.set(SomaMetrics.Name.cacheEntries, [("layer", "l1")], Double(cache.l1.count))
                return prometheus.emitToBuffer()
            }
        )
        let router = Router(context: SomaRequestContext.self)
        router.add(middleware: RequestMiddleware(metrics: metrics, inFlight: inFlight))
        api.register(on: router)

        let application = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil, backlog: configuration.backlog),
            onServerRunning: { channel in
                readiness.set(.ready, port: channel.localAddress?.port)
                logger.info("soma is serving", metadata: [
                    "soma.address": .string(channel.localAddress.map { "\($0)" } ?? "?"),
                    "soma.instance": .string(configuration.instanceID),
                    "soma.model_version": .string(catalog.version),
                ])
            },
            logger: logger
        )
        if configuration.serviceToken == nil {
            logger.warning("no SOMA_SERVICE_TOKEN configured: authentication is off, callers are 'anonymous' unless they send X-User-Id")
        }
        return SomaServer(
            configuration: configuration, application: application, readiness: readiness, service: service, store: store, warmer: warmer,
            prometheus: prometheus,
            maintenance: MaintenanceService(service: service, limiter: local, logger: logger),
            drain: DrainService(readiness: readiness, delay: configuration.drainDelay, logger: logger),
            replayer: postgres?.replayer,
            outbox: postgres?.outbox
        )
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
            }
        }
    }
}

/// Graceful shutdown, first step: `/ready` turns 503 at once, then the server keeps serving for
/// `delay` so load balancers take the instance out before it stops accepting.
public struct DrainService: Service {
    let readiness: Readiness
    let delay: Duration
    let logger: Logger

    public func run() async throws {
        try? await gracefulShutdown()
        readiness.set(.draining)
        logger.info("draining: not ready, finishing in-flight requests", metadata: ["soma.drain_seconds": .stringConvertible(delay.components.seconds)])
        try? await Task.sleep(for: delay)
    }
}

/// The standard process metrics, read at scrape time.
final class ProcessMetrics: Sendable {
    private let cpu: Prometheus.Gauge
    private let resident: Prometheus.Gauge
    private let fds: Prometheus.Gauge
    private let start: Prometheus.Gauge
    private let disk: Prometheus.Gauge
    private let stateDirectory: URL

    init(registry: PrometheusCollectorRegistry, stateDirectory: URL) {
        cpu = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.processCPU, "CPU seconds used by the process (user + system)"))
        resident = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.processResident, "Resident memory of the process"))
        fds = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.processOpenFDs, "Open file descriptors"))
        start = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.processStart, "Process start, seconds since the epoch"))
        disk = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.stateDirBytes, "Bytes used by the instance's state directory"))
        self.stateDirectory = stateDirectory
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        let cut = name.lastIndex(of: "_")!
        return MetricNameDescriptor(metricName: String(name[..<cut]), unitName: String(name[name.index(after: cut)...]), helpText: help)
    }

    func refresh() {
        if let v = ProcessStats.cpuSeconds() { cpu.set(v) }
        if let v = ProcessStats.residentBytes() { resident.set(Double(v)) }
        if let v = ProcessStats.openFileDescriptors() { fds.set(Double(v)) }
        if let v = ProcessStats.startTime() { start.set(v) }
        disk.set(Double(ProcessStats.directoryBytes(stateDirectory)))
    }
}
