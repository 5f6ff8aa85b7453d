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

}

extension ResultCache {
    /// Removes every per-user entry of `userID` (`CacheKey.userEntries(of:)`); returns how many existed.
    @discardableResult
    public func deleteUser(_ userID: String) async throws -> Int {
        try await delete(CacheKey.userEntries(of: userID))
    }
}
