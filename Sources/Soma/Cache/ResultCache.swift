/// A shared or local cache layer below the in-process L1: Redis (L2) when `REDIS_URL` is set, the
/// local SQLite cache file (the fallback) while Redis is unavailable.
///
/// Values are opaque bytes (a module's result JSON, a profile document); keys are `CacheKey`s, whose
/// `description` is the Redis key. Every method may throw when the layer cannot answer (the tiered
/// cache above treats a throw as a miss and records it for the circuit breaker).
public protocol ResultCache: Sendable {
    /// The layer's name in metrics and in the response's `cache` object: `l2` or `fallback`.
    var layer: String { get }

    /// Looks up several keys at once (one round trip where the layer can: pipelined GETs / MGET);
    /// `nil` where a key is missing or expired. The result has one element per key, in order.
    func get(_ keys: [CacheKey]) async throws -> [[UInt8]?]

    /// Stores several values at once, each living `ttl`.
    func set(_ entries: [(key: CacheKey, value: [UInt8])], ttl: Duration) async throws

    /// Removes the given keys; returns how many existed.
    @discardableResult
    func delete(_ keys: [CacheKey]) async throws -> Int

    /// Looks up the keys where `fetch` is true and records all of them in `user`'s index of
    /// analysis entries (kept `ttl` after its last use), in one round trip where the layer can.
    /// Returns one value per key (nil where not fetched or missing) and, per key, whether the
    /// user's index held it before this call. A layer without an index records nothing and says
    /// false.
    func lookup(_ keys: [CacheKey], fetch: [Bool], user: UserTag, ttl: Duration) async throws -> (values: [[UInt8]?], seen: [Bool])

    /// Erases what the layer holds of `user` by itself: their per-user entries and, where it keeps
    /// an index (Redis), every analysis entry in it and the index. Returns how many held a value.
    func eraseUser(_ user: UserTag) async throws -> Int

    /// Deletes the analysis entries whose names have these `UserCacheIndex` fingerprints (a
    /// layer local to this instance, searched by this instance's index); returns how many held a
    /// value. A shared layer, which keeps its own index, does nothing.
    func deleteEntries(fingerprints: Set<Int>) async throws -> Int
}

extension ResultCache {
    /// Removes every per-user entry of `user` (`CacheKey.userEntries(of:)`); returns how many existed.
    @discardableResult
    public func deleteUserEntries(_ user: UserTag) async throws -> Int {
        try await delete(CacheKey.userEntries(of: user))
    }

    /// No index: the values, and nothing seen.
    public func lookup(_ keys: [CacheKey], fetch: [Bool], user: UserTag, ttl: Duration) async throws -> (values: [[UInt8]?], seen: [Bool]) {
        let wanted = keys.indices.filter { fetch[$0] }
        let found = try await get(wanted.map { keys[$0] })
        var values = [[UInt8]?](repeating: nil, count: keys.count)
        for (i, value) in zip(wanted, found) { values[i] = value }
        return (values, keys.map { _ in false })
    }

    /// No index: the per-user entries only.
    public func eraseUser(_ user: UserTag) async throws -> Int {
        try await deleteUserEntries(user)
    }

    public func deleteEntries(fingerprints: Set<Int>) async throws -> Int { 0 }
}
