public import Foundation
public import Soma

/// Everything `soma serve` can be told, each with a default: flags override the environment,
/// which overrides the defaults (ARCHITECTURE §4 pinned decisions, §9).
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8788
    public var instanceID = "soma-1"
    /// The per-instance state directory (`SOMA_STATE_DIR`, default `./.soma/<INSTANCE_ID>/`).
    public var stateDirectory: URL
    /// The embedded store's file (`SOMA_SQLITE_PATH`, default `<state>/soma.sqlite`).
    public var sqlitePath: String?
    /// `SOMA_SERVICE_TOKEN`: with it, /v1 needs `Authorization: Bearer <token>`; without, auth is off.
    public var serviceToken: String?
    /// `SOMA_ADMIN_TOKEN`: /admin needs it; without it, /admin is refused (403).
    public var adminToken: String?
    public var modelDirectory: URL
    /// Weights are converted to this precision at load (`SOMA_MODEL_PRECISION`, default fp16).
    public var modelPrecision: WeightTable.Precision? = .fp16
    /// Largest request body (`SOMA_MAX_BODY_BYTES`, default 256 KiB).
    public var maxBodyBytes = 256 * 1024
    /// `SOMA_DEADLINE_MS` (default 1000) and the cap on `X-Request-Deadline-Ms` (`SOMA_MAX_DEADLINE_MS`, 10000).
    public var defaultDeadline: Duration = .seconds(1)
    public var maxDeadline: Duration = .seconds(10)
    /// Tier table (rate limits, per-user concurrency, text and batch caps).
    public var tiers = TierPolicy.default
    /// `SOMA_MAX_IN_FLIGHT` (256), `SOMA_MAX_QUEUED` (256), `SOMA_WORKERS` (one per core).
    public var admission = AdmissionConfiguration()
    /// `SOMA_CACHE_BYTES` (128 MiB) and `SOMA_CACHE_TTL_SECONDS` (3600).
    public var cacheBytes = 128 << 20
    public var cacheTTL: Duration = .seconds(3600)
    /// `DATABASE_URL` (postgresql://user:pass@host:port/db): entries and profiles in PostgreSQL, with
    /// the local outbox while it is unavailable. Unset: the embedded SQLite store.
    public var databaseURL: String?
    /// `SOMA_DB_POOL` (8), `SOMA_DB_TIMEOUT_MS` (2000: connect and statement timeout).
    public var databasePoolSize = 8
    public var databaseTimeout: Duration = .seconds(2)
    /// The circuit breaker around PostgreSQL.
    public var databaseBreaker = CircuitBreakerConfiguration()
    /// `REDIS_URL` (redis://[:password@]host:port[/db]): L2 cache and shared rate limits. Unset: the
    /// embedded default (in-process cache and limits only).
    public var redisURL: String?
    /// `SOMA_REDIS_POOL` (4), `SOMA_REDIS_TIMEOUT_MS` (250: connect and command timeout).
    public var redisPoolSize = 4
    public var redisTimeout: Duration = .milliseconds(250)
    /// The circuit breaker around Redis.
    public var redisBreaker = CircuitBreakerConfiguration()
    /// The local fallback cache file while Redis is down (`<state>/cache.sqlite`; `SOMA_FALLBACK_CACHE_BYTES`, 256 MiB).
    public var fallbackCacheBytes = 256 << 20
    /// `SOMA_CACHE_SCOPE`: `shared` (analysis entries are content-addressed and shared) or `user`.
    public var cacheScope: AnalysisService.Configuration.CacheScope = .shared
    /// Per-user data (profile) lives shorter in L1 (`SOMA_USER_CACHE_TTL_SECONDS`, 60).
    public var userCacheTTL: Duration = .seconds(60)
    /// Models unused this long are unloaded (`SOMA_MODEL_IDLE_SECONDS`, 600).
    public var modelIdleTimeout: Duration = .seconds(600)
    /// How long /ready answers 503 before the server stops accepting (`SOMA_DRAIN_SECONDS`, 1), so a
    /// load balancer notices before connections are refused.
    public var drainDelay: Duration = .seconds(1)
    /// Listen backlog (`SOMA_BACKLOG`, 4096: the default 256 overflows at 1000+ connections).
    public var backlog = 4096
    /// Most entries a profile is built from (`SOMA_PROFILE_ENTRIES`, 1000).
    public var profileEntries = 1000

    public init(stateDirectory: URL? = nil, modelDirectory: URL? = nil) {
        self.stateDirectory = stateDirectory ?? URL(fileURLWithPath: ".soma/\(instanceID)", isDirectory: true)
        self.modelDirectory = modelDirectory ?? ModelSet.defaultDirectory()
    }

    public enum ConfigurationError: Error, CustomStringConvertible {
        case invalid(String, String)
        public var description: String {
            switch self {
            case .invalid(let name, let value): "invalid value for \(name): \(value)"
            }
        }
    }

    /// Reads the environment (names as documented on each property).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> ServerConfiguration {
        var c = ServerConfiguration(modelDirectory: ModelSet.defaultDirectory(environment: env))
        func value(_ name: String) -> String? {
            guard let v = env[name]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }
        func int(_ name: String, min: Int = 0) throws -> Int? {
            guard let raw = value(name) else { return nil }
            guard let n = Int(raw), n >= min else { throw ConfigurationError.invalid(name, raw) }
            return n
        }
        if let p = try int("SOMA_PORT") { c.port = p }
        if let v = value("INSTANCE_ID") { c.instanceID = v }
        c.stateDirectory = value("SOMA_STATE_DIR").map { URL(fileURLWithPath: $0, isDirectory: true) }
            ?? URL(fileURLWithPath: ".soma/\(c.instanceID)", isDirectory: true)
        c.sqlitePath = value("SOMA_SQLITE_PATH")
        c.serviceToken = value("SOMA_SERVICE_TOKEN")
        c.adminToken = value("SOMA_ADMIN_TOKEN")
        if let raw = value("SOMA_MODEL_PRECISION") {
            switch raw.lowercased() {
            case "fp16": c.modelPrecision = .fp16
            case "fp32": c.modelPrecision = .fp32
            case "file", "native": c.modelPrecision = nil
            default: throw ConfigurationError.invalid("SOMA_MODEL_PRECISION", raw)
            }
        }
        if let n = try int("SOMA_MAX_BODY_BYTES", min: 1) { c.maxBodyBytes = n }
        if let n = try int("SOMA_DEADLINE_MS", min: 1) { c.defaultDeadline = .milliseconds(n) }
        if let n = try int("SOMA_MAX_DEADLINE_MS", min: 1) { c.maxDeadline = .milliseconds(n) }
        if let n = try int("SOMA_WORKERS", min: 1) { c.admission.workers = n }
        if let n = try int("SOMA_MAX_IN_FLIGHT", min: 1) { c.admission.maxInFlight = n }
        if let n = try int("SOMA_MAX_QUEUED", min: 0) { c.admission.maxQueued = n }
        if let n = try int("SOMA_CACHE_BYTES", min: 0) { c.cacheBytes = n }
        if let n = try int("SOMA_CACHE_TTL_SECONDS", min: 1) { c.cacheTTL = .seconds(n) }
        if let n = try int("SOMA_USER_CACHE_TTL_SECONDS", min: 1) { c.userCacheTTL = .seconds(n) }
        c.databaseURL = value("DATABASE_URL")
        if let n = try int("SOMA_DB_POOL", min: 1) { c.databasePoolSize = n }
        if let n = try int("SOMA_DB_TIMEOUT_MS", min: 1) { c.databaseTimeout = .milliseconds(n) }
        if let n = try int("SOMA_DB_BREAKER_WINDOW", min: 1) { c.databaseBreaker.slidingWindowSize = n }
        if let n = try int("SOMA_DB_BREAKER_MIN_CALLS", min: 1) { c.databaseBreaker.minimumNumberOfCalls = n }
        if let n = try int("SOMA_DB_BREAKER_WAIT_MS", min: 1) { c.databaseBreaker.waitDurationInOpenState = .milliseconds(n) }
        // Database calls are slower than cache calls: a call is slow at a quarter of the timeout.
        c.databaseBreaker.slowCallDurationThreshold = max(.milliseconds(100), c.databaseTimeout / 4)
        c.redisURL = value("REDIS_URL")
        if let n = try int("SOMA_REDIS_POOL", min: 1) { c.redisPoolSize = n }
        if let n = try int("SOMA_REDIS_TIMEOUT_MS", min: 1) { c.redisTimeout = .milliseconds(n) }
        if let n = try int("SOMA_FALLBACK_CACHE_BYTES", min: 0) { c.fallbackCacheBytes = n }
        // The breaker around Redis (resilience4j semantics; see CircuitBreakerConfiguration).
        if let n = try int("SOMA_REDIS_BREAKER_WINDOW", min: 1) { c.redisBreaker.slidingWindowSize = n }
        if let n = try int("SOMA_REDIS_BREAKER_MIN_CALLS", min: 1) { c.redisBreaker.minimumNumberOfCalls = n }
        if let n = try int("SOMA_REDIS_BREAKER_FAILURE_PERCENT", min: 1) { c.redisBreaker.failureRateThreshold = Double(n) }
        if let n = try int("SOMA_REDIS_BREAKER_WAIT_MS", min: 1) { c.redisBreaker.waitDurationInOpenState = .milliseconds(n) }
        if let n = try int("SOMA_REDIS_SLOW_CALL_MS", min: 1) { c.redisBreaker.slowCallDurationThreshold = .milliseconds(n) }
        if let raw = value("SOMA_CACHE_SCOPE") {
            guard let scope = AnalysisService.Configuration.CacheScope(rawValue: raw.lowercased()) else {
                throw ConfigurationError.invalid("SOMA_CACHE_SCOPE", raw)
            }
            c.cacheScope = scope
        }
        if let n = try int("SOMA_MODEL_IDLE_SECONDS", min: 1) { c.modelIdleTimeout = .seconds(n) }
        if let n = try int("SOMA_DRAIN_SECONDS", min: 0) { c.drainDelay = .seconds(n) }
        if let n = try int("SOMA_BACKLOG", min: 1) { c.backlog = n }
        if let n = try int("SOMA_PROFILE_ENTRIES", min: 1) { c.profileEntries = n }
        for tier in Tier.allCases {
            let prefix = "SOMA_TIER_\(tier.rawValue.uppercased())_"
            var limits = c.tiers[tier]
            if let n = try int(prefix + "RPM", min: 1) { limits.requestsPerWindow = n }
            if let n = try int(prefix + "CONCURRENCY", min: 1) { limits.maxInFlightPerUser = n }
            if let n = try int(prefix + "TEXT_BYTES", min: 1) { limits.maxTextBytes = n }
            if let n = try int(prefix + "BATCH_ITEMS", min: 1) { limits.maxBatchItems = n }
            c.tiers[tier] = limits
        }
        c.admission.policy = c.tiers
        return c
    }

    /// Where the embedded store lives.
    public var resolvedSQLitePath: String {
        sqlitePath ?? stateDirectory.appendingPathComponent("soma.sqlite").path
    }
}
