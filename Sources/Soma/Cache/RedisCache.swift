/// L2: analysis results and per-user entries in Redis, shared by every instance.
///
/// Keys are `CacheKey.description` (`soma:v1:a:<module>:<modelversion>:<sha256>`,
/// `soma:v1:u:<usertag>:<name>`, and each user's index `soma:v1:ux:<usertag>`); values are the result JSON as is — already compact, and versioned
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

    /// One pipeline: the GETs, `SMISMEMBER` on the user's index (before it is updated), `SADD` of
    /// every key and `PEXPIRE` of the index.
    public func lookup(_ keys: [CacheKey], fetch: [Bool], user: UserTag, ttl: Duration) async throws -> (values: [[UInt8]?], seen: [Bool]) {
        guard !keys.isEmpty else { return ([], []) }
        let index = RedisValue.string(CacheKey.userIndex(of: user))
        let names = keys.map { RedisValue.string($0.description) }
        let wanted = keys.indices.filter { fetch[$0] }
        var commands: [[RedisValue]] = wanted.map { ["GET", names[$0]] }
        commands.append(["SMISMEMBER", index] + names)
        commands.append(["SADD", index] + names)
        commands.append(["PEXPIRE", index, .integer(Self.milliseconds(ttl))])
        let replies = try await client.pipeline(commands)
        if let failed = replies.first(where: { $0.errorMessage != nil }) {
            throw RedisError(.protocol, failed.errorMessage ?? "lookup failed")
        }
        var values = [[UInt8]?](repeating: nil, count: keys.count)
        for (position, i) in wanted.enumerated() { values[i] = replies[position].bytes }
        let members = replies[wanted.count].array ?? []
        guard members.count == keys.count else { throw RedisError(.protocol, "SMISMEMBER answered \(members.count) of \(keys.count)") }
        return (values, members.map { $0.int == 1 })
    }

    /// The index's members, the per-user entries and the index, deleted in one `DEL` after one
    /// `SMEMBERS`. A key another instance adds between the two is still deleted with the index
    /// on the next erase of the same user; an entry it fills meanwhile lives at most its TTL.
    public func eraseUser(_ user: UserTag) async throws -> Int {
        let index = CacheKey.userIndex(of: user)
        let members = try await client.command(["SMEMBERS", .string(index)])
        if let message = members.errorMessage { throw RedisError(.protocol, message) }
        let names = (members.array ?? []).compactMap(\.string)
        let perUser = CacheKey.userEntries(of: user).map(\.description)
        let reply = try await client.command(["DEL"] + (names + perUser).map { .string($0) })
        if let message = reply.errorMessage { throw RedisError(.protocol, message) }
        _ = try await client.command(["DEL", .string(index)])
        return Int(reply.int ?? 0)
    }

    private static func milliseconds(_ ttl: Duration) -> Int64 {
        max(1, ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000)
    }

    @discardableResult
    public func delete(_ keys: [CacheKey]) async throws -> Int {
        guard !keys.isEmpty else { return 0 }
        let reply = try await client.command(["DEL"] + keys.map { .string($0.description) })
        if let message = reply.errorMessage { throw RedisError(.protocol, message) }
        return Int(reply.int ?? 0)
    }
}
