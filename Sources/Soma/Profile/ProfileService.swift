import Foundation

/// A user's profile document (`{"updated_at", "profile"}`), built from their stored entries, saved
/// as a snapshot and cached per user: what `GET /v1/profile` serves and what cache warming
/// preloads (docs/ARCHITECTURE.md §4).
public struct ProfileService: Sendable {
    let store: any Store
    let cache: TieredCache
    let builder: ProfileBuilder
    let entryLimit: Int

    public init(store: any Store, cache: TieredCache, builder: ProfileBuilder = ProfileBuilder(), entryLimit: Int) {
        self.store = store
        self.cache = cache
        self.builder = builder
        self.entryLimit = entryLimit
    }

    /// The cached document, or a fresh one (then cached); `cached` says which.
    public func document(for user: String) async throws -> (document: [UInt8], cached: Bool) {
        if let hit = await cache.getUser(CacheKey.user(user, "profile")) { return (hit.value, true) }
        return (try await rebuild(user), false)
    }

    /// Builds, saves and caches the document.
    @discardableResult
    public func rebuild(_ user: String) async throws -> [UInt8] {
        let entries = try await store.recentEntries(user: user, limit: entryLimit)
        let profile = try builder.build(entries: entries).json()
        let updated = Date()
        var w = JSONWriter(capacity: profile.count + 64)
        w.beginObject()
        w.key("updated_at"); w.string(Timestamp.iso8601(updated))
        w.key("profile"); w.raw(profile)
        w.endObject()
        // A user with no entries gets the empty document but no stored row, so reads for unknown
        // ids cannot grow the database; a stored snapshot is replaced (it may describe entries
        // since deleted).
        let keep = entries.isEmpty ? try await store.profile(user: user) != nil : true
        if keep {
            try await store.saveProfile(ProfileSnapshot(userID: user, snapshot: profile, updatedAt: updated))
        }
        await cache.setUser(CacheKey.user(user, "profile"), w.bytes)
        return w.bytes
    }

    /// The users with the most entries, most first.
    public func mostActiveUsers(limit: Int) async throws -> [String] {
        try await store.mostActiveUsers(limit: limit)
    }
}
