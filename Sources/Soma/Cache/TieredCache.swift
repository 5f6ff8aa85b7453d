import Synchronization

/// Where a module's result came from, as the response's `cache` object says.
public enum CacheSource: String, Sendable, Hashable {
    case l1, l2, fallback, miss
}

/// A cache hit and the layer that answered.
public struct CacheHit: Sendable, Equatable {
    public var value: [UInt8]
    public var source: CacheSource
    /// Whether the user the lookup was for produced or was served this entry before (their own
    /// history, which is all a response may reveal); true for lookups made for nobody.
    public var seen: Bool

    public init(value: [UInt8], source: CacheSource, seen: Bool = true) {
        self.value = value
        self.source = source
        self.seen = seen
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
/// Who touched which entry is kept per user (`index` on this instance, the Redis set
/// `soma:v1:ux:<tag>` in L2, updated in the lookup's own round trip): a hit says `seen` only when
/// the user produced or was served it before, so a response never tells one user what another
/// sent; and erasing a user (`eraseUser`) removes every entry they touched from every layer here
/// and in L2, while other instances purge theirs from the store's erasure log (`purgeLocal`).
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

        /// The most one L2 call may take, the wait for a pooled connection included; past it the
        /// call counts as failed and the caller takes the fallback. Nil: the driver's own bounds.
        public var callTimeout: Duration?

        public init(ttl: Duration = .seconds(3600), userTTL: Duration = .seconds(60), callTimeout: Duration? = nil) {
            self.ttl = ttl
            self.userTTL = userTTL
            self.callTimeout = callTimeout
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
    /// Which analysis entries each user touched on this instance.
    public let index: UserCacheIndex
    private let metrics: SomaMetrics
    /// Users whose L2 invalidation (per-user entries) or erasure (everything) failed, with a
    /// generation bumped on every failure: a flush forgets a user only if nothing failed again
    /// for them while it was deleting.
    private let pending = Mutex<(invalidations: [UserTag: UInt64], erasures: [UserTag: UInt64])>(([:], [:]))

    public init(
        configuration: Configuration = Configuration(),
        l1: L1Cache<[UInt8]>,
        remote: (any ResultCache)? = nil,
        fallback: (any ResultCache)? = nil,
        breaker: CircuitBreaker? = nil,
        index: UserCacheIndex? = nil,
        metrics: SomaMetrics
    ) {
        self.configuration = configuration
        self.l1 = l1
        self.remote = remote
        self.fallback = fallback
        self.breaker = breaker
        self.index = index ?? UserCacheIndex(ttl: configuration.ttl)
        self.metrics = metrics
    }

    /// Whether L2 is configured and its breaker lets calls through.
    public var remoteHealthy: Bool {
        guard remote != nil else { return false }
        return breaker.map { $0.stateValue == 0 } ?? true
    }

    // MARK: Analysis entries

    /// One element per key: the value, where it came from and whether `user` touched it before,
    /// or nil on a miss in every layer. With a user, the keys are recorded as touched by them.
    public func get(_ keys: [CacheKey], for user: UserTag? = nil) async -> [CacheHit?] {
        var hits: [CacheHit?] = keys.map { key in l1.get(key).map { CacheHit(value: $0, source: .l1) } }
        for hit in hits { metrics.cache(layer: "l1", hit: hit != nil) }
        let prints = user == nil ? [] : keys.map(UserCacheIndex.fingerprint)
        var seen = user.map { index.seen($0, fingerprints: prints) } ?? keys.map { _ in true }
        let missing = hits.indices.filter { hits[$0] == nil }
        // L2 is asked for what L1 missed, and also when the user's own history is unknown here:
        // another instance may have served them.
        let unknownHistory = user != nil && hits.indices.contains { hits[$0] != nil && !seen[$0] }
        var answered = false
        if let remote, !missing.isEmpty || unknownHistory {
            let fetch = hits.map { $0 == nil }
            let ttl = configuration.ttl
            let reply: (values: [[UInt8]?], seen: [Bool])?
            if let user {
                reply = try? await callRemote { try await remote.lookup(keys, fetch: fetch, user: user, ttl: ttl) }
            } else {
                let wanted = missing.map { keys[$0] }
                reply = (try? await callRemote { try await remote.get(wanted) }).map { found in
                    var values = [[UInt8]?](repeating: nil, count: keys.count)
                    for (i, value) in zip(missing, found) { values[i] = value }
                    return (values, keys.map { _ in true })
                }
            }
            if let reply {
                answered = true
                fill(&hits, missing: missing, found: missing.map { reply.values[$0] }, keys: keys, source: .l2)
                for i in keys.indices { seen[i] = seen[i] || reply.seen[i] }
            }
        }
        if !answered, !missing.isEmpty, remote != nil || fallback != nil, let fallback,
            let found = try? await fallback.get(missing.map { keys[$0] })
        {
            fill(&hits, missing: missing, found: found, keys: keys, source: .fallback)
        }
        if let user { await forget(index.insert(user, fingerprints: prints)) }
        for i in hits.indices { hits[i]?.seen = seen[i] }
        return hits
    }

    private func fill(_ hits: inout [CacheHit?], missing: [Int], found: [[UInt8]?], keys: [CacheKey], source: CacheSource) {
        for (i, value) in zip(missing, found) {
            metrics.cache(layer: source.rawValue, hit: value != nil)
            guard let value else { continue }
            hits[i] = CacheHit(value: value, source: source)
            l1.set(keys[i], value, cost: value.count + 96)
        }
    }

    /// Entries dropped from the index to keep it bounded leave this instance's layers too, so no
    /// entry a user touched outlives its record (and escapes their erasure).
    private func forget(_ fingerprints: Set<Int>) async {
        guard !fingerprints.isEmpty else { return }
        l1.removeAll { fingerprints.contains(UserCacheIndex.fingerprint($0)) }
        if let fallback { _ = try? await fallback.deleteEntries(fingerprints: fingerprints) }
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
        let tag = UserTag(userID)
        var removed = l1.removeAll { $0.userTag == tag }
        if let fallback { removed += (try? await fallback.deleteUserEntries(tag)) ?? 0 }
        if let remote {
            if let n = try? await callRemote({ try await remote.deleteUserEntries(tag) }) {
                removed += n
            } else {
                pending.withLock { $0.invalidations[tag, default: 0] &+= 1 }
            }
        }
        return removed
    }

    /// Erases `userID` from every cache layer: their per-user entries and every analysis entry
    /// they produced or were served, on this instance (L1, the fallback) and in L2, with both
    /// indexes. Returns how many entries held a value. An L2 erasure that fails is retried on the
    /// next successful L2 call; other instances purge their own layers from the erasure log
    /// (`purgeLocal`).
    @discardableResult
    public func eraseUser(_ userID: String) async -> Int {
        let tag = UserTag(userID)
        var removed = await purgeLocal(tag)
        if let remote {
            if let n = try? await callRemote({ try await remote.eraseUser(tag) }) {
                removed += n
            } else {
                pending.withLock { $0.erasures[tag, default: 0] &+= 1 }
            }
        }
        return removed
    }

    /// Erases what this instance holds of the user tagged `tag` (L1, the fallback, the index);
    /// returns how many entries held a value.
    @discardableResult
    public func purgeLocal(_ tag: UserTag) async -> Int {
        let touched = index.remove(tag)
        var removed = l1.removeAll { $0.userTag == tag || (!touched.isEmpty && touched.contains(UserCacheIndex.fingerprint($0))) }
        if let fallback {
            removed += (try? await fallback.eraseUser(tag)) ?? 0
            removed += (try? await fallback.deleteEntries(fingerprints: touched)) ?? 0
        }
        return removed
    }

    /// One L2 call through the breaker; invalidations and erasures that failed before are retried
    /// first, so no read can see an entry a finished write or erase meant to delete. Bounded by the
    /// call timeout and by what is left of the request's `RedisBudget` (none left: not made).
    private func callRemote<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let timeout = try RedisBudget.bound(for: configuration.callTimeout)
        let call: @Sendable () async throws -> T = { [self] in
            try await boundedCall(within: timeout) {
                try await self.flushPending()
                return try await body()
            }
        }
        guard let breaker else { return try await call() }
        return try await breaker.run(call)
    }

    private func flushPending() async throws {
        guard let remote else { return }
        let (invalidations, erasures) = pending.withLock { $0 }
        for (user, generation) in invalidations {
            try await remote.deleteUserEntries(user)
            pending.withLock { if $0.invalidations[user] == generation { $0.invalidations[user] = nil } }
        }
        for (user, generation) in erasures {
            _ = try await remote.eraseUser(user)
            pending.withLock { if $0.erasures[user] == generation { $0.erasures[user] = nil } }
        }
    }
}
