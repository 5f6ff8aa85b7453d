import Synchronization

/// Where a module's result came from, as the response's `cache` object says.
public enum CacheSource: String, Sendable, Hashable {
    case l1, l2, fallback, miss
}

/// A cache hit and the layer that answered.
public struct CacheHit: Sendable, Equatable {
    public var value: [UInt8]
    public var source: CacheSource

    public init(value: [UInt8], source: CacheSource) {
        self.value = value
        self.source = source
    }
}

/// L1 (in-process) over L2 (Redis, shared by the instances) with the local SQLite fallback while
/// L2 is unavailable: the cache of docs/ARCHITECTURE.md §3 and §5.
///
/// Analysis entries (content-addressed, user-free) go through every layer: a lookup tries L1, then
/// L2 for what L1 missed (one pipelined round trip), or the fallback when L2 fails or its breaker is
/// open; hits from below are copied into L1. A fill writes L1 and L2 (or the fallback while L2 is
/// down).
///
/// Per-user entries (the profile) must give read-your-writes on every instance once a write has
/// returned. They are therefore kept only where every instance sees the same copy: in L2 when one
/// is configured (never in L1, never in the per-instance fallback), and in L1 only on the embedded
/// default where there is a single instance. A user's write deletes them (`invalidateUser`) before
/// it is answered. Why not pub/sub invalidation of L1 copies: delivery is asynchronous, so another
/// instance could still serve the old profile right after the write; one L2 GET (≈ 0.1 ms) is
/// cheaper than that doubt. While L2 is down, per-user entries are not cached at all (computed from
/// the store each time), and an invalidation that could not reach L2 is retried on the next
/// successful L2 call; per-user entries also live only `userTTL` in L2, which bounds staleness if
/// an instance dies with a pending invalidation.
public final class TieredCache: Sendable {
    public struct Configuration: Sendable {
        /// How long analysis entries live in L2 and the fallback (L1 has its own TTL).
        public var ttl: Duration
        /// How long per-user entries live: in L2, or in L1 when no Redis is configured (then, with
        /// several instances over one PostgreSQL, another instance's write reaches this one's cached
        /// profile only when it expires, so this TTL bounds how stale it can be).
        public var userTTL: Duration

        public init(ttl: Duration = .seconds(3600), userTTL: Duration = .seconds(60)) {
            self.ttl = ttl
            self.userTTL = userTTL
        }
    }

    public let configuration: Configuration
    public let l1: L1Cache<[UInt8]>
    /// L2: Redis, when configured.
    public let remote: (any ResultCache)?
    /// Used for analysis entries while L2 fails or its breaker is open.
    public let fallback: (any ResultCache)?
    /// Around every L2 call.
    public let breaker: CircuitBreaker?
    private let metrics: SomaMetrics
    /// Users whose L2 invalidation failed, with a generation bumped on every failure: a flush
    /// forgets a user only if no invalidation failed again while it was deleting.
    private let pendingInvalidations = Mutex<[String: UInt64]>([:])

    public init(
        configuration: Configuration = Configuration(),
        l1: L1Cache<[UInt8]>,
        remote: (any ResultCache)? = nil,
        fallback: (any ResultCache)? = nil,
        breaker: CircuitBreaker? = nil,
        metrics: SomaMetrics
    ) {
        self.configuration = configuration
        self.l1 = l1
        self.remote = remote
        self.fallback = fallback
        self.breaker = breaker
        self.metrics = metrics
    }

    /// Whether L2 is configured and its breaker lets calls through.
    public var remoteHealthy: Bool {
        guard remote != nil else { return false }
        return breaker.map { $0.stateValue == 0 } ?? true
    }

    // MARK: Analysis entries

    /// One element per key: the value and where it came from, or nil on a miss in every layer.
    public func get(_ keys: [CacheKey]) async -> [CacheHit?] {
        var hits: [CacheHit?] = keys.map { key in l1.get(key).map { CacheHit(value: $0, source: .l1) } }
        for hit in hits { metrics.cache(layer: "l1", hit: hit != nil) }
        let missing = hits.indices.filter { hits[$0] == nil }
        guard !missing.isEmpty, remote != nil || fallback != nil else { return hits }
        let missingKeys = missing.map { keys[$0] }

        var found: [[UInt8]?]?
        var source = CacheSource.l2
        if let remote {
            found = try? await callRemote { try await remote.get(missingKeys) }
        }
        if found == nil, let fallback {
            source = .fallback
            found = try? await fallback.get(missingKeys)
        }
        guard let found else { return hits }
        for (i, value) in zip(missing, found) {
            metrics.cache(layer: source.rawValue, hit: value != nil)
            guard let value else { continue }
            hits[i] = CacheHit(value: value, source: source)
            l1.set(keys[i], value, cost: value.count + 96)
        }
        return hits
    }

    /// Writes analysis entries to L1 and L2 (or to the fallback while L2 is unavailable).
    public func set(_ entries: [(key: CacheKey, value: [UInt8])]) async {
        guard !entries.isEmpty else { return }
        for entry in entries { l1.set(entry.key, entry.value, cost: entry.value.count + 96) }
        if let remote, (try? await callRemote({ try await remote.set(entries, ttl: self.configuration.ttl) })) != nil {
            return
        }
        if let fallback { try? await fallback.set(entries, ttl: configuration.ttl) }
    }

    // MARK: Per-user entries

    /// A per-user entry (the profile): from L2 when Redis is configured, else from L1.
    public func getUser(_ key: CacheKey) async -> CacheHit? {
        guard let remote else {
            let hit = l1.get(key)
            metrics.cache(layer: "l1", hit: hit != nil)
            return hit.map { CacheHit(value: $0, source: .l1) }
        }
        guard let values = try? await callRemote({ try await remote.get([key]) }) else { return nil }
        metrics.cache(layer: "l2", hit: values.first ?? nil != nil)
        return (values.first ?? nil).map { CacheHit(value: $0, source: .l2) }
    }

    public func setUser(_ key: CacheKey, _ value: [UInt8]) async {
        guard let remote else {
            l1.set(key, value, cost: value.count + 64, ttl: configuration.userTTL)
            return
        }
        _ = try? await callRemote { try await remote.set([(key, value)], ttl: self.configuration.userTTL) }
    }

    /// Deletes every per-user entry of `userID` in every layer; returns how many existed. An L2
    /// delete that fails is remembered and retried on the next successful L2 call.
    @discardableResult
    public func invalidateUser(_ userID: String) async -> Int {
        var removed = l1.removeAll { $0.userID == userID }
        if let fallback { removed += (try? await fallback.deleteUser(userID)) ?? 0 }
        if let remote {
            if let n = try? await callRemote({ try await remote.deleteUser(userID) }) {
                removed += n
            } else {
                pendingInvalidations.withLock { $0[userID, default: 0] &+= 1 }
            }
        }
        return removed
    }

    /// One L2 call through the breaker; invalidations that failed before are retried first, so no
    /// read can see an entry a finished write meant to delete.
    private func callRemote<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let call: @Sendable () async throws -> T = { [self] in
            try await flushPendingInvalidations()
            return try await body()
        }
        guard let breaker else { return try await call() }
        return try await breaker.run(call)
    }

    private func flushPendingInvalidations() async throws {
        guard let remote else { return }
        let pending = pendingInvalidations.withLock { $0 }
        for (user, generation) in pending {
            try await remote.deleteUser(user)
            pendingInvalidations.withLock { if $0[user] == generation { $0[user] = nil } }
        }
    }
}
