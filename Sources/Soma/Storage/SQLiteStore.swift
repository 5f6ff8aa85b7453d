public import Foundation
public import Logging
import Synchronization

/// The embedded `Store`: one SQLite file in WAL mode, shareable by several processes.
///
/// One connection serves every call, guarded by a `Mutex`. SQLite calls run synchronously inside
/// the `async` methods, on the calling task's thread: they are short (indexed lookups and small
/// writes, prepared statements cached per SQL string), so blocking a cooperative thread for that
/// long is accepted here for an embedded store. A writer waits up to the busy timeout for another
/// process' lock (holding the `Mutex`, so this process' other calls wait too), then fails with
/// `StoreError(.unavailable)`.
///
/// `init` does not create the schema: call `migrate()` first.
public final class SQLiteStore: Store {
    /// A row of the `users` table.
    public struct UserRecord: Sendable, Equatable {
        public var id: String
        public var tier: Tier
        public var createdAt: Date
        public var lastSeenAt: Date

        public init(id: String, tier: Tier, createdAt: Date, lastSeenAt: Date) {
            self.id = id
            self.tier = tier
            self.createdAt = createdAt
            self.lastSeenAt = lastSeenAt
        }
    }

    /// The path that opens a private, in-memory database instead of a file.
    public static let inMemoryPath = ":memory:"

    /// How long a statement waits for another connection's lock before failing.
    public static let busyTimeout = Duration.seconds(5)

    /// `nil` once `close()` ran.
    private let connection: Mutex<SQLiteConnection?>
    private let logger: Logger
    /// Where the database lives (`inMemoryPath` for an in-memory one).
    public let path: String

    /// Opens (creating the file and its parent directories if needed) the database at `path`.
    ///
    /// Pass `SQLiteStore.inMemoryPath` for a private in-memory database (tests). Throws
    /// `StoreError(.unavailable)` when the file cannot be opened.
    public init(
        path: String,
        logger: Logger = Logger(label: "soma.store.sqlite", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws {
        if path != Self.inMemoryPath {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            } catch {
                throw StoreError(.unavailable, "cannot create directory \(directory.path) for the SQLite database: \(error)")
            }
        }
        let connection = try SQLiteConnection(path: path, busyTimeout: Self.busyTimeout)
        self.connection = Mutex(connection)
        self.logger = logger
        self.path = path
        logger.debug("opened SQLite store", metadata: ["path": "\(path)"])
    }

    /// Closes the connection; every later call fails with `StoreError(.unavailable)`.
    public func close() {
        connection.withLock { $0 = nil }
        logger.debug("closed SQLite store", metadata: ["path": "\(path)"])
    }

    // MARK: - Schema

    /// One schema step; applied steps are recorded in `schema_migrations` and never run again.
    struct Migration: Sendable {
        var version: Int
        var statements: [String]
    }

    /// Every schema step, in order. Append new versions; never edit an applied one.
    static let migrations: [Migration] = [
        Migration(
            version: 1,
            statements: [
                """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY,
                    tier TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    last_seen_at INTEGER NOT NULL
                )
                """,
                """
                CREATE TABLE entries (
                    id TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    text TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    analysis TEXT NOT NULL,
                    model_version TEXT NOT NULL
                )
                """,
                "CREATE INDEX entries_user_created ON entries (user_id, created_at DESC, id DESC)",
                """
                CREATE TABLE idempotency_keys (
                    user_id TEXT NOT NULL,
                    key TEXT NOT NULL,
                    entry_id TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    PRIMARY KEY (user_id, key)
                )
                """,
                """
                CREATE TABLE profiles (
                    user_id TEXT PRIMARY KEY,
                    snapshot TEXT NOT NULL,
                    updated_at INTEGER NOT NULL
                )
                """,
            ])
    ]

    public func migrate() async throws {
        let now = UnixMilliseconds.from(Date())
        let (applied, unknown) = try withConnection { db throws(StoreError) in
            // The version check happens inside the write transaction, so of two processes migrating
            // at once the second waits for the first and then finds every version applied.
            try db.transaction { () throws(StoreError) -> ([Int], [Int]) in
                try db.executeOnce("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER)")
                let done = Set(try db.query("SELECT version FROM schema_migrations") { Int($0.int64(0)) })
                var applied: [Int] = []
                for migration in Self.migrations where !done.contains(migration.version) {
                    for statement in migration.statements { try db.executeOnce(statement) }
                    try db.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                        [.integer(Int64(migration.version)), .integer(now)]
                    )
                    applied.append(migration.version)
                }
                let known = Set(Self.migrations.map(\.version))
                return (applied, done.subtracting(known).sorted())
            }
        }
        for version in applied {
            logger.info("applied SQLite schema migration", metadata: ["version": "\(version)", "path": "\(path)"])
        }
        if !unknown.isEmpty {
            logger.warning(
                "SQLite schema has versions this build does not know (written by a newer build?)", metadata: ["versions": "\(unknown)", "path": "\(path)"])
        }
    }

    /// The schema versions recorded in `schema_migrations`, ascending (empty before `migrate()`).
    public func appliedMigrations() async throws -> [Int] {
        try withConnection { db throws(StoreError) in
            let exists = try db.query("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'") { $0.int64(0) }
            guard exists.first == 1 else { return [] }
            return try db.query("SELECT version FROM schema_migrations ORDER BY version") { Int($0.int64(0)) }
        }
    }

    // MARK: - Users

    public func recordUser(_ userID: String, tier: Tier) async throws {
        let now = UnixMilliseconds.from(Date())
        try withConnection { db throws(StoreError) in
            _ = try db.execute(
                """
                INSERT INTO users (id, tier, created_at, last_seen_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET tier = excluded.tier, last_seen_at = excluded.last_seen_at
                """,
                [.text(userID), .text(tier.rawValue), .integer(now), .integer(now)]
            )
        }
    }

    /// The stored user row, `nil` when the user was never recorded (or was erased).
    public func user(_ userID: String) async throws -> UserRecord? {
        try withConnection { db throws(StoreError) in
            try db.query("SELECT tier, created_at, last_seen_at FROM users WHERE id = ?", [.text(userID)]) { row throws(StoreError) in
                let raw = row.text(0)
                guard let tier = Tier(rawValue: raw) else { throw StoreError(.failed, "unknown tier \"\(raw)\" stored for a user") }
                return UserRecord(
                    id: userID, tier: tier,
                    createdAt: UnixMilliseconds.date(row.int64(1)), lastSeenAt: UnixMilliseconds.date(row.int64(2))
                )
            }.first
        }
    }

    // MARK: - Entries

    private static let entryColumns = "id, user_id, text, created_at, analysis, model_version"

    private static func entry(_ row: borrowing SQLiteRow) -> Entry {
        Entry(
            id: row.text(0), userID: row.text(1), text: row.text(2),
            createdAt: UnixMilliseconds.date(row.int64(3)), analysis: row.bytes(4), modelVersion: row.text(5)
        )
    }

    private static func entry(in db: SQLiteConnection, user: String, id: String) throws(StoreError) -> Entry? {
        try db.query(
            "SELECT \(entryColumns) FROM entries WHERE user_id = ? AND id = ?",
            [.text(user), .text(id)], Self.entry
        ).first
    }

    /// Also idempotent on `entry.id`: when the same user already stored an entry with this id (an
    /// outbox replay), returns `.existing` with the stored entry and writes nothing. An id taken by
    /// another user fails with `StoreError(.failed)` and reveals nothing of that entry.
    public func insertEntry(_ entry: Entry, idempotencyKey: String?) async throws -> EntryInsertResult {
        var stored = entry
        stored.createdAt = UnixMilliseconds.rounded(entry.createdAt)
        let now = UnixMilliseconds.from(Date())
        return try withConnection { [stored] db throws(StoreError) in
            try db.transaction { () throws(StoreError) -> EntryInsertResult in
                let user = stored.userID
                if let idempotencyKey,
                    let previousID = try db.query(
                        "SELECT entry_id FROM idempotency_keys WHERE user_id = ? AND key = ?",
                        [.text(user), .text(idempotencyKey)], { $0.text(0) }
                    ).first,
                    let previous = try Self.entry(in: db, user: user, id: previousID)
                {
                    return .existing(previous)
                }
                if let previous = try Self.entry(in: db, user: user, id: stored.id) {
                    return .existing(previous)
                }
                try db.execute(
                    "INSERT INTO entries (\(Self.entryColumns)) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        .text(stored.id), .text(user), .text(stored.text),
                        .integer(UnixMilliseconds.from(stored.createdAt)), .textBytes(stored.analysis), .text(stored.modelVersion),
                    ]
                )
                if let idempotencyKey {
                    // A key left by a deleted entry points at nothing: this write takes it over.
                    try db.execute(
                        """
                        INSERT INTO idempotency_keys (user_id, key, entry_id, created_at) VALUES (?, ?, ?, ?)
                        ON CONFLICT (user_id, key) DO UPDATE SET entry_id = excluded.entry_id, created_at = excluded.created_at
                        """,
                        [.text(user), .text(idempotencyKey), .text(stored.id), .integer(now)]
                    )
                }
                try db.execute(
                    """
                    INSERT INTO users (id, tier, created_at, last_seen_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at
                    """,
                    [.text(user), .text(Tier.standard.rawValue), .integer(now), .integer(now)]
                )
                return .inserted(stored)
            }
        }
    }

    /// `limit` below 1 counts as 1.
    public func entries(user: String, limit: Int, cursor: String?) async throws -> EntryPage {
        let limit = max(1, limit)
        let position: EntryCursor? = if let cursor { try EntryCursor(decoding: cursor) } else { nil }
        // One row more than asked tells whether there is a next page without a second query.
        let fetch = Int64(clamping: limit) < .max ? Int64(clamping: limit) + 1 : .max
        let rows = try withConnection { db throws(StoreError) in
            if let position {
                try db.query(
                    """
                    SELECT \(Self.entryColumns) FROM entries
                    WHERE user_id = ? AND (created_at, id) < (?, ?)
                    ORDER BY created_at DESC, id DESC LIMIT ?
                    """,
                    [.text(user), .integer(position.createdAtMilliseconds), .text(position.id), .integer(fetch)], Self.entry
                )
            } else {
                try db.query(
                    "SELECT \(Self.entryColumns) FROM entries WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                    [.text(user), .integer(fetch)], Self.entry
                )
            }
        }
        guard rows.count > limit else { return EntryPage(entries: rows, nextCursor: nil) }
        let page = Array(rows.prefix(limit))
        return EntryPage(entries: page, nextCursor: page.last.map { EntryCursor(after: $0).encoded })
    }

    public func entry(user: String, id: String) async throws -> Entry? {
        try withConnection { db throws(StoreError) in try Self.entry(in: db, user: user, id: id) }
    }

    public func entry(user: String, idempotencyKey: String) async throws -> Entry? {
        try withConnection { db throws(StoreError) in
            guard
                let id = try db.query(
                    "SELECT entry_id FROM idempotency_keys WHERE user_id = ? AND key = ?", [.text(user), .text(idempotencyKey)], { $0.text(0) }
                ).first
            else { return nil }
            return try Self.entry(in: db, user: user, id: id)
        }
    }

    /// Also forgets the idempotency keys that pointed at the entry.
    public func deleteEntry(user: String, id: String) async throws -> Bool {
        try withConnection { db throws(StoreError) in
            try db.transaction { () throws(StoreError) -> Bool in
                let deleted = try db.execute("DELETE FROM entries WHERE user_id = ? AND id = ?", [.text(user), .text(id)])
                guard deleted > 0 else { return false }
                try db.execute("DELETE FROM idempotency_keys WHERE user_id = ? AND entry_id = ?", [.text(user), .text(id)])
                return true
            }
        }
    }

    /// Empty when `limit` is below 1.
    public func recentEntries(user: String, limit: Int) async throws -> [Entry] {
        guard limit > 0 else { return [] }
        return try withConnection { db throws(StoreError) in
            try db.query(
                "SELECT \(Self.entryColumns) FROM entries WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                [.text(user), .integer(Int64(clamping: limit))], Self.entry
            )
        }
    }

    public func mostActiveUsers(limit: Int) async throws -> [String] {
        guard limit > 0 else { return [] }
        return try withConnection { db throws(StoreError) in
            try db.query(
                "SELECT user_id, COUNT(*) AS n FROM entries GROUP BY user_id ORDER BY n DESC, user_id LIMIT ?",
                [.integer(Int64(clamping: limit))]
            ) { row throws(StoreError) in row.text(0) }
        }
    }

    // MARK: - Profiles

    public func profile(user: String) async throws -> ProfileSnapshot? {
        try withConnection { db throws(StoreError) in
            try db.query("SELECT snapshot, updated_at FROM profiles WHERE user_id = ?", [.text(user)]) { row in
                ProfileSnapshot(userID: user, snapshot: row.bytes(0), updatedAt: UnixMilliseconds.date(row.int64(1)))
            }.first
        }
    }

    /// `updatedAt` is kept at millisecond precision.
    public func saveProfile(_ profile: ProfileSnapshot) async throws {
        try withConnection { db throws(StoreError) in
            _ = try db.execute(
                """
                INSERT INTO profiles (user_id, snapshot, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (user_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at
                """,
                [.text(profile.userID), .textBytes(profile.snapshot), .integer(UnixMilliseconds.from(profile.updatedAt))]
            )
        }
    }

    // MARK: - Erasure and health

    public func deleteUser(_ userID: String) async throws -> UserErasure {
        try withConnection { db throws(StoreError) in
            try db.transaction { () throws(StoreError) -> UserErasure in
                let user: [SQLiteValue] = [.text(userID)]
                return UserErasure(
                    entries: try db.execute("DELETE FROM entries WHERE user_id = ?", user),
                    profiles: try db.execute("DELETE FROM profiles WHERE user_id = ?", user),
                    idempotencyKeys: try db.execute("DELETE FROM idempotency_keys WHERE user_id = ?", user),
                    user: try db.execute("DELETE FROM users WHERE id = ?", user) > 0
                )
            }
        }
    }

    /// The embedded store serves one instance, which purged its caches when it erased.
    public func erasures(after id: Int64, limit: Int) async throws -> [ErasureNotice] { [] }

    public func isHealthy() async -> Bool {
        let result = try? withConnection { db throws(StoreError) in try db.query("SELECT 1") { $0.int64(0) } }
        return result == [1]
    }

    // MARK: - Connection

    /// Runs `body` with the connection while holding the lock.
    private func withConnection<Result: Sendable>(
        _ body: (SQLiteConnection) throws(StoreError) -> Result
    ) throws(StoreError) -> Result {
        try connection.withLock { (db: inout SQLiteConnection?) throws(StoreError) -> Result in
            guard let db else { throw StoreError(.unavailable, "the SQLite store at \(path) is closed") }
            return try body(db)
        }
    }
}
