/// L2: analysis results and per-user entries in Redis, shared by every instance.
///
/// Keys are `CacheKey.description` (`soma:v1:a:<module>:<modelversion>:<sha256>`,
/// `soma:v1:u:<user>:<name>`); values are the result JSON as is — already compact, and versioned
/// by the model version in the key. Lookups and fills are pipelined: one round trip for a whole
/// request (or batch) whatever the number of modules.
public final class RedisCache: ResultCache {
    public let layer = "l2"
    private let client: RedisClient

    public init(client: RedisClient) {
        self.client = client
    }

    public func get(_ keys: [CacheKey]) async throws -> [[UInt8]?] {
        guard !keys.isEmpty else { return [] }
        let replies = try await client.pipeline(keys.map { ["GET", .string($0.description)] })
        return try replies.map { reply in
            if let message = reply.errorMessage { throw RedisError(.protocol, message) }
            return reply.bytes
        }
    }

    public func set(_ entries: [(key: CacheKey, value: [UInt8])], ttl: Duration) async throws {
        guard !entries.isEmpty else { return }
        let milliseconds = max(1, ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000)
        let replies = try await client.pipeline(entries.map { ["SET", .string($0.key.description), .bytes($0.value), "PX", .integer(milliseconds)] })
        if let failed = replies.first(where: { $0.errorMessage != nil }) {
            throw RedisError(.protocol, failed.errorMessage ?? "SET failed")
        }
    }

    @discardableResult
    public func delete(_ keys: [CacheKey]) async throws -> Int {
        guard !keys.isEmpty else { return 0 }
        let reply = try await client.command(["DEL"] + keys.map { .string($0.description) })
        if let message = reply.errorMessage { throw RedisError(.protocol, message) }
        return Int(reply.int ?? 0)
    }
}
