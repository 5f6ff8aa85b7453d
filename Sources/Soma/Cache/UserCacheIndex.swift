import Synchronization

/// Which analysis entries each user produced or was served on this instance: what lets the
/// response say `cached` only about the caller's own history, and what erasing a user removes
/// from the instance's own layers (L1 and the fallback). Redis keeps the same per user for L2
/// (`soma:v1:ux:<tag>`), which every instance shares (docs/ARCHITECTURE.md §5).
///
/// Entries are 64-bit FNV-1a fingerprints of the keys' Redis names (a collision at worst reports
/// one entry as seen or erases one extra entry; the fallback file, which keeps only the names, is
/// searched with the same function), grouped by `UserTag`. Bounded: users idle for `ttl` (the cache's
/// own TTL, after which their entries are gone anyway) are forgotten by `prune`; past `maxKeys`
/// fingerprints in all, the least recently active users are dropped and their fingerprints handed
/// back, so the caller removes those entries from its layers: nothing a user touched can outlive
/// their index entry and escape an erasure.
public final class UserCacheIndex: Sendable {
    private struct Keys {
        var fingerprints: Set<Int> = []
        var lastActive: Duration = .zero
    }

    private struct State {
        var users: [UserTag: Keys] = [:]
        var count = 0
    }

    public let maxKeys: Int
    private let ttl: Duration
    private let elapsed: @Sendable () -> Duration
    private let state = Mutex(State())

    public init(ttl: Duration, maxKeys: Int = 1_000_000, clock: any Clock<Duration> = ContinuousClock()) {
        self.ttl = ttl
        self.maxKeys = maxKeys
        self.elapsed = Timeline(clock: clock).now
    }

    /// The fingerprint of a key, as the index stores it.
    public static func fingerprint(_ key: CacheKey) -> Int { Int(truncatingIfNeeded: key.nameFingerprint) }

    /// The fingerprint of a key from its Redis name (`CacheKey.description`).
    public static func fingerprint(name: String) -> Int { Int(truncatingIfNeeded: FNV1a.hash(name.utf8)) }

    /// For each key, whether `user` touched it here within the index's memory.
    public func seen(_ user: UserTag, _ keys: [CacheKey]) -> [Bool] {
        seen(user, fingerprints: keys.map(Self.fingerprint))
    }

    public func seen(_ user: UserTag, fingerprints: [Int]) -> [Bool] {
        state.withLock { state in
            guard let known = state.users[user] else { return fingerprints.map { _ in false } }
            return fingerprints.map { known.fingerprints.contains($0) }
        }
    }

    /// Records that `user` touched `keys`; returns fingerprints of other users' entries dropped to
    /// stay within `maxKeys` (the caller removes those entries from its layers).
    @discardableResult
    public func insert(_ user: UserTag, _ keys: [CacheKey]) -> Set<Int> {
        insert(user, fingerprints: keys.map(Self.fingerprint))
    }

    @discardableResult
    public func insert(_ user: UserTag, fingerprints: [Int]) -> Set<Int> {
        let now = elapsed()
        return state.withLock { state in
            var entry = state.users.removeValue(forKey: user) ?? Keys()
            let before = entry.fingerprints.count
            for print in fingerprints { entry.fingerprints.insert(print) }
            entry.lastActive = now
            state.count += entry.fingerprints.count - before
            state.users[user] = entry
            var dropped: Set<Int> = []
            while state.count > maxKeys, let victim = state.users.filter({ $0.key != user }).min(by: { $0.value.lastActive < $1.value.lastActive }) {
                dropped.formUnion(victim.value.fingerprints)
                state.count -= victim.value.fingerprints.count
                state.users[victim.key] = nil
            }
            return dropped
        }
    }

    /// Forgets `user`; returns the fingerprints they touched.
    public func remove(_ user: UserTag) -> Set<Int> {
        state.withLock { state in
            guard let entry = state.users.removeValue(forKey: user) else { return [] }
            state.count -= entry.fingerprints.count
            return entry.fingerprints
        }
    }

    /// Forgets users idle longer than the TTL (their entries have expired from every layer).
    @discardableResult
    public func prune() -> Int {
        let now = elapsed()
        return state.withLock { state in
            let idle = state.users.filter { now - $0.value.lastActive > ttl }
            for (user, entry) in idle {
                state.count -= entry.fingerprints.count
                state.users[user] = nil
            }
            return idle.count
        }
    }

    /// Fingerprints held, over all users.
    public var count: Int { state.withLock { $0.count } }
}
