public import Foundation
import Synchronization

/// The local fallback cache: one SQLite file in the instance's state directory
/// (`<state>/cache.sqlite`), used while Redis is down or its circuit breaker is open.
///
/// The file outlives the process, so cached results survive a restart. It is a cache, not a store:
/// the file runs in WAL mode with `synchronous=NORMAL` (a power loss may drop the last writes,
/// which only costs a recomputation), and when the values outgrow `maxBytes` the least recently
/// used entries are evicted until the total is under 90% of it.
///
/// ```swift
/// let fallback = try SQLiteCache(path: state.appendingPathComponent("cache.sqlite").path)
/// try await fallback.set([(key, bytes)], ttl: .seconds(3_600))
/// let values = try await fallback.get([key])   // [bytes]
/// ```
///
/// **Schema.** One table, `cache(key, value, expires_at, size, last_used)`, indexed on `expires_at`
/// and `last_used`:
///
/// - `key` is the key's `description` (the Redis key), `value` the bytes as a BLOB.
/// - `expires_at` is in unix milliseconds on the wall clock, because the file outlives the process
///   and a monotonic clock restarts with it. A row whose `expires_at` is not after now counts as
///   missing; `get` deletes such rows when it meets them, `purgeExpired()` and eviction delete all.
/// - `size` is what a row counts against `maxBytes`: the UTF-8 bytes of its key plus its value.
/// - `last_used` orders rows for eviction: the wall-clock millisecond of the last write or hit,
///   raised by one where needed so that every use gets a strictly larger stamp than the one before
///   (several uses in one millisecond keep their order, and a clock step backwards cannot make a
///   recent entry look old).
///
/// **Time.** `init(path:maxBytes:now:)` takes the wall clock as a closure (`Date()` in production,
/// a hand-moved date in tests). `init(path:maxBytes:clock:)` takes a `Clock` instead: the default
/// `ContinuousClock()` reads `Date()` directly; any other clock (a test's manual clock) is mapped
/// onto the wall clock, its instant at `init` standing for `Date()` at `init`, so time advances
/// exactly as that clock does.
///
/// **Concurrency.** One connection serves every call, guarded by a `Mutex`. SQLite runs
/// synchronously inside the `async` methods, on the calling task's thread: every call is a few
/// indexed statements in one transaction, and the fallback only serves traffic while Redis is down,
/// so blocking a cooperative thread that long is accepted (as in `SQLiteStore`).
///
/// The running totals behind `totalBytes`, `count` and eviction are kept in memory (read from the
/// file at `init`), so one process should own the file at a time, as it does with one state
/// directory per instance.
///
/// **Errors.** Every method throws what `SQLiteConnection` throws, a `StoreError`; the tiered cache
/// above treats a throw as a miss. A failed write changes neither the file nor the totals.
public final class SQLiteCache: ResultCache {
    /// How long a statement waits for another connection's lock before failing.
    public static let busyTimeout = Duration.seconds(2)

    /// How many of the least recently used rows eviction reads per query.
    private static let evictionPage = 64

    /// The connection and the running totals, changed together under the lock.
    private struct State {
        let connection: SQLiteConnection
        /// `SUM(size)` over every row, expired or not.
        var totalBytes: Int
        /// Number of rows, expired or not.
        var count: Int
        /// The largest `last_used` stamp handed out (or found in the file at `init`).
        var lastUse: Int64

        /// The next `last_used` stamp: the current millisecond, or one more than the last stamp
        /// when that is not smaller.
        mutating func nextUse(now: Int64) -> Int64 {
            lastUse = max(now, lastUse &+ 1)
            return lastUse
        }
    }

    private let state: Mutex<State>
    /// The wall clock.
    private let now: @Sendable () -> Date

    /// Where the cache file lives (`SQLiteStore.inMemoryPath` for a private in-memory database).
    public let path: String
    /// The size budget: a write that takes the total past it evicts down to `evictionTarget`.
    public let maxBytes: Int
    /// 90% of `maxBytes`: where eviction stops. A single entry larger than this is not cached.
    public let evictionTarget: Int

    /// `"fallback"`.
    public var layer: String { "fallback" }

    /// Opens (creating the file, its parent directories and the table if needed) the cache at
    /// `path`, reading time from `clock` (see **Time** above: the default reads `Date()`).
    ///
    /// Throws `StoreError(.unavailable)` when the directory or file cannot be created or opened.
    public convenience init(path: String, maxBytes: Int = 256 << 20, clock: any Clock<Duration> = ContinuousClock()) throws {
        try self.init(path: path, maxBytes: maxBytes, now: Self.wallClock(clock))
    }

    /// Opens the cache at `path` with `now` as the wall clock (tests pass a date they move by hand).
    ///
    /// Throws `StoreError(.unavailable)` when the directory or file cannot be created or opened.
    public init(path: String, maxBytes: Int, now: @escaping @Sendable () -> Date) throws {
        if path != SQLiteStore.inMemoryPath {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            } catch {
                throw StoreError(.unavailable, "cannot create directory \(directory.path) for the SQLite cache: \(error)")
            }
        }
        let connection = try SQLiteConnection(path: path, busyTimeout: Self.busyTimeout)
        // A cache need not survive a power loss: skip the fsync of every commit.
        try connection.execute("PRAGMA synchronous=NORMAL")
        try connection.executeOnce(
            """
            CREATE TABLE IF NOT EXISTS cache (
                key TEXT PRIMARY KEY,
                value BLOB NOT NULL,
                expires_at INTEGER NOT NULL,
                size INTEGER NOT NULL,
                last_used INTEGER NOT NULL
            )
            """
        )
        try connection.executeOnce("CREATE INDEX IF NOT EXISTS cache_expires_at ON cache (expires_at)")
        try connection.executeOnce("CREATE INDEX IF NOT EXISTS cache_last_used ON cache (last_used)")
        let totals =
            try connection.query("SELECT COALESCE(SUM(size), 0), COUNT(*), COALESCE(MAX(last_used), 0) FROM cache") {
                (bytes: Int($0.int64(0)), count: Int($0.int64(1)), lastUse: $0.int64(2))
            }.first ?? (0, 0, 0)
        self.state = Mutex(State(connection: connection, totalBytes: totals.bytes, count: totals.count, lastUse: totals.lastUse))
        self.now = now
        self.path = path
        self.maxBytes = max(0, maxBytes)
        self.evictionTarget = self.maxBytes / 10 * 9 + self.maxBytes % 10 * 9 / 10
    }

    // MARK: - ResultCache

    /// One indexed lookup per key, all in one transaction that also stamps the hits' `last_used`
    /// and deletes the expired rows it met. `nil` where a key is missing or expired.
    public func get(_ keys: [CacheKey]) async throws -> [[UInt8]?] {
        guard !keys.isEmpty else { return [] }
        let now = nowMilliseconds()
        return try state.withLock { (state: inout State) throws(StoreError) -> [[UInt8]?] in
            let db = state.connection
            var next = state
            let values = try db.transaction { () throws(StoreError) -> [[UInt8]?] in
                var values: [[UInt8]?] = []
                values.reserveCapacity(keys.count)
                for key in keys {
                    let name = SQLiteValue.text(key.description)
                    let rows = try db.query("SELECT value, expires_at, size FROM cache WHERE key = ?", [name]) {
                        (value: $0.bytes(0), expiresAt: $0.int64(1), size: Int($0.int64(2)))
                    }
                    guard let row = rows.first else {
                        values.append(nil)
                        continue
                    }
                    if row.expiresAt <= now {
                        try db.execute("DELETE FROM cache WHERE key = ?", [name])
                        next.totalBytes -= row.size
                        next.count -= 1
                        values.append(nil)
                    } else {
                        try db.execute("UPDATE cache SET last_used = ? WHERE key = ?", [.integer(next.nextUse(now: now)), name])
                        values.append(row.value)
                    }
                }
                return values
            }
            state = next
            return values
        }
    }

    /// Upserts every entry in one transaction, each expiring `ttl` from now, then evicts if the
    /// total passed `maxBytes`. An entry whose size exceeds `evictionTarget`, or a `ttl` that is not
    /// positive, stores nothing and removes what the key held before (the old value must not be
    /// read in place of the new one).
    public func set(_ entries: [(key: CacheKey, value: [UInt8])], ttl: Duration) async throws {
        guard !entries.isEmpty else { return }
        let now = nowMilliseconds()
        let (sum, overflow) = now.addingReportingOverflow(Self.milliseconds(ttl))
        let expiresAt = overflow ? Int64.max : sum
        let storable = ttl > .zero
        try state.withLock { (state: inout State) throws(StoreError) in
            let db = state.connection
            var next = state
            try db.transaction { () throws(StoreError) in
                for entry in entries {
                    let name = SQLiteValue.text(entry.key.description)
                    let size = entry.key.description.utf8.count + entry.value.count
                    let old = try db.query("SELECT size FROM cache WHERE key = ?", [name]) { Int($0.int64(0)) }.first
                    guard storable, size <= evictionTarget else {
                        if let old {
                            try db.execute("DELETE FROM cache WHERE key = ?", [name])
                            next.totalBytes -= old
                            next.count -= 1
                        }
                        continue
                    }
                    // `CAST(? AS BLOB)`: the bytes are bound as TEXT (the connection binds no BLOBs)
                    // and stored as a BLOB, byte for byte, NULs and invalid UTF-8 included.
                    try db.execute(
                        """
                        INSERT INTO cache (key, value, expires_at, size, last_used) VALUES (?, CAST(? AS BLOB), ?, ?, ?)
                        ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at,
                            size = excluded.size, last_used = excluded.last_used
                        """,
                        [name, .textBytes(entry.value), .integer(expiresAt), .integer(Int64(size)), .integer(next.nextUse(now: now))]
                    )
                    next.totalBytes += size - (old ?? 0)
                    if old == nil { next.count += 1 }
                }
                if next.totalBytes > maxBytes {
                    try evict(db, &next, now: now)
                }
            }
            state = next
        }
    }

    /// Deletes the keys in one transaction; returns how many of them held an unexpired value (an
    /// expired row is deleted too, but counts as already gone, as in Redis).
    @discardableResult
    public func delete(_ keys: [CacheKey]) async throws -> Int {
        guard !keys.isEmpty else { return 0 }
        return try deleteRows { _ in keys.map(\.description) }
    }

    /// The file keeps no index of its own: this instance's `UserCacheIndex` is it.
    public func deleteEntries(fingerprints: Set<Int>) async throws -> Int {
        guard !fingerprints.isEmpty else { return 0 }
        return try delete { fingerprints.contains(UserCacheIndex.fingerprint(name: $0)) }
    }

    /// Deletes every row whose key name `matches`; returns how many held an unexpired value.
    /// O(rows): for erasing a user (`UserCacheIndex` fingerprints), not for the request path.
    @discardableResult
    public func delete(where matches: (String) -> Bool) throws -> Int {
        try deleteRows { db throws(StoreError) in try db.query("SELECT key FROM cache") { $0.text(0) }.filter(matches) }
    }

    /// Deletes the rows `names` picks (inside the same transaction), keeping the byte and row
    /// totals; returns how many held an unexpired value (an expired row counts as already gone,
    /// as in Redis).
    private func deleteRows(_ names: (SQLiteConnection) throws(StoreError) -> [String]) throws -> Int {
        let now = nowMilliseconds()
        return try state.withLock { (state: inout State) throws(StoreError) -> Int in
            let db = state.connection
            var next = state
            let existed = try db.transaction { () throws(StoreError) -> Int in
                var existed = 0
                for name in try names(db) {
                    let rows = try db.query("DELETE FROM cache WHERE key = ? RETURNING size, expires_at", [.text(name)]) {
                        (size: Int($0.int64(0)), expiresAt: $0.int64(1))
                    }
                    for row in rows {
                        next.totalBytes -= row.size
                        next.count -= 1
                        if row.expiresAt > now { existed += 1 }
                    }
                }
                return existed
            }
            state = next
            return existed
        }
    }

    // MARK: - Maintenance and metrics

    /// Deletes every expired row; returns how many there were.
    @discardableResult
    public func purgeExpired() throws -> Int {
        let now = nowMilliseconds()
        return try state.withLock { (state: inout State) throws(StoreError) -> Int in
            let db = state.connection
            let sizes = try db.transaction { () throws(StoreError) -> [Int] in
                try db.query("DELETE FROM cache WHERE expires_at <= ? RETURNING size", [.integer(now)]) { Int($0.int64(0)) }
            }
            state.totalBytes -= sizes.reduce(0, +)
            state.count -= sizes.count
            return sizes.count
        }
    }

    /// The bytes the rows count against `maxBytes` (keys plus values), expired rows included until
    /// they are deleted. Kept in memory: reading it costs no query.
    public var totalBytes: Int {
        state.withLock { $0.totalBytes }
    }

    /// The number of rows, expired rows included until they are deleted. Kept in memory.
    public var count: Int {
        state.withLock { $0.count }
    }

    // MARK: - Internals

    /// Brings `state.totalBytes` down to `evictionTarget`: expired rows first (dead weight whatever
    /// their age), then the least recently used rows, a page at a time. Runs inside the caller's
    /// transaction.
    private func evict(_ db: SQLiteConnection, _ state: inout State, now: Int64) throws(StoreError) {
        let expired = try db.query("DELETE FROM cache WHERE expires_at <= ? RETURNING size", [.integer(now)]) { Int($0.int64(0)) }
        state.totalBytes -= expired.reduce(0, +)
        state.count -= expired.count
        while state.totalBytes > evictionTarget {
            let victims = try db.query("SELECT rowid, size FROM cache ORDER BY last_used LIMIT ?", [.integer(Int64(Self.evictionPage))]) {
                (rowid: $0.int64(0), size: Int($0.int64(1)))
            }
            guard !victims.isEmpty else {
                // The table is empty: the running totals drifted (another process wrote the file).
                state.totalBytes = 0
                state.count = 0
                return
            }
            for victim in victims where state.totalBytes > evictionTarget {
                try db.execute("DELETE FROM cache WHERE rowid = ?", [.integer(victim.rowid)])
                state.totalBytes -= victim.size
                state.count -= 1
            }
        }
    }

    private func nowMilliseconds() -> Int64 {
        UnixMilliseconds.from(now())
    }

    /// `duration` in whole milliseconds, rounded up (a positive TTL never becomes zero), saturating.
    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000)
        if overflow { return seconds < 0 ? .min : .max }
        let perMillisecond: Int64 = 1_000_000_000_000_000
        var fraction = attoseconds / perMillisecond
        if attoseconds % perMillisecond > 0 { fraction += 1 }
        let (total, overflowTotal) = whole.addingReportingOverflow(fraction)
        return overflowTotal ? .max : total
    }

    /// A wall clock driven by `clock` (see **Time** in the type's documentation).
    private static func wallClock<C: Clock>(_ clock: C) -> @Sendable () -> Date where C.Duration == Duration {
        if clock is ContinuousClock { return { Date() } }
        let origin = clock.now
        let base = Date()
        return {
            let (seconds, attoseconds) = origin.duration(to: clock.now).components
            return base.addingTimeInterval(Double(seconds) + Double(attoseconds) * 1e-18)
        }
    }
}
