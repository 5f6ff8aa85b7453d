public import Foundation

/// Everything the runtime needs, whatever serves it (HTTP, `soma warm-cache`, `soma migrate`):
/// models, stores, Redis, breakers, admission, caches and tiers. Each property names its variable
/// and default; `init(settings:)` reads them (docs/ARCHITECTURE.md §6).
public struct RuntimeConfiguration: Sendable {
    /// `INSTANCE_ID` (soma-1): names the instance in logs, metrics and client names.
    public var instanceID = "soma-1"
    /// The per-instance state directory (`SOMA_STATE_DIR`, default `./.soma/<INSTANCE_ID>/`): the
    /// embedded store, the outbox and the fallback cache live here.
    public var stateDirectory: URL
    /// The embedded store's file (`SOMA_SQLITE_PATH`, default `<state>/soma.sqlite`).
    public var sqlitePath: String?
    /// `SOMA_MODEL_DIR` (default `./Fixtures/models`).
    public var modelDirectory: URL
    /// Weights are converted to this precision at load (`SOMA_MODEL_PRECISION`: fp16 (default),
    /// fp32, or file/native for the file's own).
    public var modelPrecision: WeightTable.Precision? = .fp16
    /// Models unused this long are unloaded (`SOMA_MODEL_IDLE_SECONDS`, 600).
    public var modelIdleTimeout: Duration = .seconds(600)
    /// Tier table (rate limits, per-user concurrency, text and batch caps):
    /// `SOMA_TIER_<TIER>_RPM`, `_CONCURRENCY`, `_TEXT_BYTES`, `_BATCH_ITEMS`.
    public var tiers = TierPolicy.default
    /// `SOMA_MAX_IN_FLIGHT` (256), `SOMA_MAX_QUEUED` (256), `SOMA_WORKERS` (one per core). Its
    /// policy is `tiers`.
    public var admission = AdmissionConfiguration()
    /// `SOMA_CACHE_BYTES` (128 MiB) and `SOMA_CACHE_TTL_SECONDS` (3600).
    public var cacheBytes = 128 << 20
    public var cacheTTL: Duration = .seconds(3600)
    /// Per-user data (profile) lives shorter in the caches (`SOMA_USER_CACHE_TTL_SECONDS`, 60).
    public var userCacheTTL: Duration = .seconds(60)
    /// `SOMA_CACHE_SCOPE`: `shared` (analysis entries are content-addressed and shared) or `user`.
    public var cacheScope: AnalysisService.Configuration.CacheScope = .shared
    /// `DATABASE_URL` (postgresql://user:pass@host:port/db): entries and profiles in PostgreSQL, with
    /// the local outbox while it is unavailable. Unset: the embedded SQLite store.
    public var databaseURL: String?
    /// `SOMA_DB_POOL` (8), `SOMA_DB_TIMEOUT_MS` (2000: connect and statement timeout).
    public var databasePoolSize = 8
    public var databaseTimeout: Duration = .seconds(2)
    /// The circuit breaker around PostgreSQL (`SOMA_DB_BREAKER_WINDOW`, `_MIN_CALLS`, `_WAIT_MS`).
    public var databaseBreaker = CircuitBreakerConfiguration()
    /// `REDIS_URL` (redis://[:password@]host:port[/db]): L2 cache and shared rate limits. Unset: the
    /// embedded default (in-process cache and limits only).
    public var redisURL: String?
    /// `SOMA_REDIS_POOL` (4), `SOMA_REDIS_TIMEOUT_MS` (250: connect and command timeout).
    public var redisPoolSize = 4
    public var redisTimeout: Duration = .milliseconds(250)
    /// The circuit breaker around Redis (`SOMA_REDIS_BREAKER_WINDOW`, `_MIN_CALLS`,
    /// `_FAILURE_PERCENT`, `_WAIT_MS`, `SOMA_REDIS_SLOW_CALL_MS`).
    public var redisBreaker = CircuitBreakerConfiguration()
    /// The local fallback cache while Redis is down (`<state>/cache.sqlite`;
    /// `SOMA_FALLBACK_CACHE_BYTES`, 256 MiB).
    public var fallbackCacheBytes = 256 << 20
    /// Most entries a profile is built from (`SOMA_PROFILE_ENTRIES`, 1000).
    public var profileEntries = 1000

    public init(stateDirectory: URL? = nil, modelDirectory: URL? = nil) {
        self.stateDirectory = stateDirectory ?? URL(fileURLWithPath: ".soma/\(instanceID)", isDirectory: true)
        self.modelDirectory = modelDirectory ?? ModelSet.defaultDirectory(environment: [:])
    }

    /// Reads every setting (names as documented on each property); throws `Settings.Invalid` for
    /// the first value that is present and wrong.
    public init(settings: Settings) throws(Settings.Invalid) {
        self.init(modelDirectory: ModelSet.defaultDirectory(environment: settings.string("SOMA_MODEL_DIR").map { ["SOMA_MODEL_DIR": $0] } ?? [:]))
        let s = settings
        if let v = s.string("INSTANCE_ID") { instanceID = v }
        stateDirectory = URL(fileURLWithPath: s.string("SOMA_STATE_DIR") ?? ".soma/\(instanceID)", isDirectory: true)
        sqlitePath = s.string("SOMA_SQLITE_PATH")
        let precisions: [String: WeightTable.Precision?] = ["fp16": .fp16, "fp32": .fp32, "file": nil, "native": nil]
        if let p = try s.choice("SOMA_MODEL_PRECISION", precisions) {
            modelPrecision = p
        }
        if let d = try s.seconds("SOMA_MODEL_IDLE_SECONDS") { modelIdleTimeout = d }
        if let n = try s.int("SOMA_WORKERS", min: 1) { admission.workers = n }
        if let n = try s.int("SOMA_MAX_IN_FLIGHT", min: 1) { admission.maxInFlight = n }
        if let n = try s.int("SOMA_MAX_QUEUED", min: 0) { admission.maxQueued = n }
        if let n = try s.int("SOMA_CACHE_BYTES", min: 0) { cacheBytes = n }
        if let d = try s.seconds("SOMA_CACHE_TTL_SECONDS") { cacheTTL = d }
        if let d = try s.seconds("SOMA_USER_CACHE_TTL_SECONDS") { userCacheTTL = d }
        if let scope = try s.choice("SOMA_CACHE_SCOPE", ["shared": AnalysisService.Configuration.CacheScope.shared, "user": .user]) {
            cacheScope = scope
        }
        databaseURL = s.string("DATABASE_URL")
        if let n = try s.int("SOMA_DB_POOL", min: 1) { databasePoolSize = n }
        if let d = try s.milliseconds("SOMA_DB_TIMEOUT_MS") { databaseTimeout = d }
        if let n = try s.int("SOMA_DB_BREAKER_WINDOW", min: 1) { databaseBreaker.slidingWindowSize = n }
        if let n = try s.int("SOMA_DB_BREAKER_MIN_CALLS", min: 1) { databaseBreaker.minimumNumberOfCalls = n }
        if let d = try s.milliseconds("SOMA_DB_BREAKER_WAIT_MS") { databaseBreaker.waitDurationInOpenState = d }
        // Database calls are slower than cache calls: a call is slow at a quarter of the timeout.
        databaseBreaker.slowCallDurationThreshold = max(.milliseconds(100), databaseTimeout / 4)
        redisURL = s.string("REDIS_URL")
        if let n = try s.int("SOMA_REDIS_POOL", min: 1) { redisPoolSize = n }
        if let d = try s.milliseconds("SOMA_REDIS_TIMEOUT_MS") { redisTimeout = d }
        if let n = try s.int("SOMA_FALLBACK_CACHE_BYTES", min: 0) { fallbackCacheBytes = n }
        if let n = try s.int("SOMA_REDIS_BREAKER_WINDOW", min: 1) { redisBreaker.slidingWindowSize = n }
        if let n = try s.int("SOMA_REDIS_BREAKER_MIN_CALLS", min: 1) { redisBreaker.minimumNumberOfCalls = n }
        if let n = try s.int("SOMA_REDIS_BREAKER_FAILURE_PERCENT", min: 1) { redisBreaker.failureRateThreshold = Double(n) }
        if let d = try s.milliseconds("SOMA_REDIS_BREAKER_WAIT_MS") { redisBreaker.waitDurationInOpenState = d }
        if let d = try s.milliseconds("SOMA_REDIS_SLOW_CALL_MS") { redisBreaker.slowCallDurationThreshold = d }
        if let n = try s.int("SOMA_PROFILE_ENTRIES", min: 1) { profileEntries = n }
        for tier in Tier.allCases {
            let prefix = "SOMA_TIER_\(tier.rawValue.uppercased())_"
            var limits = tiers[tier]
            if let n = try s.int(prefix + "RPM", min: 1) { limits.requestsPerWindow = n }
            if let n = try s.int(prefix + "CONCURRENCY", min: 1) { limits.maxInFlightPerUser = n }
            if let n = try s.int(prefix + "TEXT_BYTES", min: 1) { limits.maxTextBytes = n }
            if let n = try s.int(prefix + "BATCH_ITEMS", min: 1) { limits.maxBatchItems = n }
            tiers[tier] = limits
        }
        admission.policy = tiers
    }

    /// Where the embedded store lives.
    public var resolvedSQLitePath: String {
        sqlitePath ?? stateDirectory.appendingPathComponent("soma.sqlite").path
    }

    /// Which store this configuration selects: the one place that decides it.
    public var storeKind: StoreKind { databaseURL == nil ? .sqlite : .postgres }
}

/// Where entries and profiles live.
public enum StoreKind: String, Sendable {
    /// The embedded SQLite file in the state directory (no outbox: the store is local).
    case sqlite
    /// PostgreSQL behind a circuit breaker, with the local outbox while it is unavailable.
    case postgres
}
