import Foundation
public import Logging
import Synchronization

/// The `Store` on PostgreSQL (`DATABASE_URL`), shared by every instance of the service.
///
/// It keeps exactly the behaviour of `SQLiteStore` (the conformance suite runs over both): the same
/// cursor format (`EntryCursor`), the same order (`created_at DESC, id DESC`, with ids compared
/// bytewise through `COLLATE "C"`, as SQLite's `BINARY`), the same idempotency rules and the same
/// erasure counts. Every value travels as a query parameter; every statement on a user's data is
/// scoped by the user id.
///
/// Schema notes:
/// - `created_at` and `updated_at` of entries and profiles are `BIGINT` unix milliseconds, as in
///   SQLite, so cursors and ordering are identical and nothing is lost to `TIMESTAMPTZ`'s microseconds.
/// - `Entry.analysis` and `ProfileSnapshot.snapshot` must come back byte for byte, and `JSONB` does not
///   keep bytes (it reorders keys and rewrites whitespace and escapes). So the bytes live in a `TEXT`
///   column (`analysis_raw`, `snapshot_raw`), the only one ever written, and `analysis` / `snapshot`
///   are `JSONB` columns *generated* from it for queries. Generated rather than written by us: one
///   value on the wire, and the two can never disagree. The price: a value that is not JSON is
///   refused (`StoreError(.failed)`), which the contract allows (both are documented as JSON).
/// - PostgreSQL text cannot hold NUL characters: writes containing one fail with
///   `StoreError(.failed)` before reaching the server; lookups by such an id find nothing.
///
/// `init` does not create the schema: call `migrate()` first.
public final class PostgresStore: Store {
    private let client: PostgresClient
    private let logger: Logger
    private let warnedUnreadableIdentity = Atomic(false)

    /// The store on `client`'s database. The caller owns the client (and closes it).
    public init(
        client: PostgresClient,
        logger: Logger = Logger(label: "soma.store.postgres", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.client = client
        self.logger = logger
    }

    // MARK: - Schema

    /// How long the erasure log keeps a notice: well past the cache TTL, after which nothing an
    /// instance holds can be older than the erasure.
    static let erasureRetention = "1 day"

    /// Applies the missing migrations in one transaction that first takes a fixed advisory lock, so
    /// of several processes migrating at once one applies them and the others wait, then find every
    /// version recorded.
    public func migrate() async throws {
        let (applied, unknown) = try await transaction { db throws -> ([Int], [Int]) in
            _ = try db.query("SELECT pg_advisory_xact_lock($1::bigint)", [.integer(Self.migrationLockKey)])
            // Under the lock nobody else creates it meanwhile (and no IF NOT EXISTS notice is logged).
            if try db.query("SELECT to_regclass('schema_migrations') IS NULL", []).rows.first?.bool(0) == true {
                _ = try db.query("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())", [])
            }
            let done = Set(try db.query("SELECT version FROM schema_migrations", []).rows.map { try Self.int($0, 0) })
            var applied: [Int] = []
            for migration in Self.migrations where !done.contains(migration.version) {
                for statement in migration.statements { _ = try db.query(statement, []) }
                _ = try db.query("INSERT INTO schema_migrations (version) VALUES ($1)", [.integer(Int64(migration.version))])
                applied.append(migration.version)
            }
            return (applied, done.subtracting(Self.migrations.map(\.version)).sorted())
        }
        for version in applied {
            logger.info("applied PostgreSQL schema migration", metadata: ["version": "\(version)"])
        }
        if !unknown.isEmpty {
            logger.warning("PostgreSQL schema has versions this build does not know (written by a newer build?)", metadata: ["versions": "\(unknown)"])
        }
    }

    /// The schema versions recorded in `schema_migrations`, ascending (empty before `migrate()`).
    public func appliedMigrations() async throws -> [Int] {
        try await transaction { db throws -> [Int] in
            let exists = try db.query("SELECT to_regclass('schema_migrations') IS NOT NULL", [])
            guard exists.rows.first?.bool(0) == true else { return [] }
            return try db.query("SELECT version FROM schema_migrations ORDER BY version", []).rows.map { try Self.int($0, 0) }
        }
    }

    // MARK: - Users

    public func recordUser(_ userID: String, tier: Tier) async throws {
        try Self.requireNoNUL(userID, "user id")
        _ = try await query(
            """
            INSERT INTO users (id, tier, created_at, last_seen_at) VALUES ($1, $2, now(), now())
            ON CONFLICT (id) DO UPDATE SET tier = excluded.tier, last_seen_at = excluded.last_seen_at
            """,
            [.text(userID), .text(tier.rawValue)]
        )
    }

    // MARK: - Entries

    private static let entryColumns = "id, user_id, text, created_at, analysis_raw, model_version"

    private static func entry(_ row: PostgresRow) throws(StoreError) -> Entry {
        Entry(
            id: try string(row, 0), userID: try string(row, 1), text: try string(row, 2),
            createdAt: UnixMilliseconds.date(try int64(row, 3)), analysis: Array(try string(row, 4).utf8),
            modelVersion: try string(row, 5)
        )
    }

    private static let entryByID = "SELECT \(entryColumns) FROM entries WHERE user_id = $1 AND id = $2"

    private static func entry(in db: any PostgresQuerying, user: String, id: String) throws -> Entry? {
        try db.query(entryByID, [.text(user), .text(id)]).rows.first.map(Self.entry)
    }

    /// Also idempotent on `entry.id`: when the same user already stored an entry with this id (an
    /// outbox replay), returns `.existing` with the stored entry and writes nothing. An id taken by
    /// another user fails with `StoreError(.failed)` and reveals nothing of that entry.
    ///
    /// Races between instances are settled inside one transaction: the entry and the key are
    /// inserted with `ON CONFLICT DO NOTHING` (which waits for a concurrent writer of the same row and
    /// then yields to it) and re-read when they were taken, so the loser answers `.existing` with the
    /// winner's entry and removes its own row. A unique violation or serialization failure that still
    /// slips through reruns the whole transaction, which then finds the winner.
    public func insertEntry(_ entry: Entry, idempotencyKey: String?) async throws -> EntryInsertResult {
        var stored = entry
        stored.createdAt = UnixMilliseconds.rounded(entry.createdAt)
        guard let analysis = String(validating: stored.analysis, as: UTF8.self) else {
            throw StoreError(.failed, "the analysis of entry \(stored.id) is not UTF-8")
        }
        for (value, what) in [
            (stored.id, "entry id"), (stored.userID, "user id"), (stored.text, "text"), (analysis, "analysis"),
            (stored.modelVersion, "model version"), (idempotencyKey ?? "", "idempotency key"),
        ] {
            try Self.requireNoNUL(value, what)
        }
        let now = UnixMilliseconds.from(Date())
        var attempt = 1
        while true {
            do {
                return try await client.withTransaction { [stored] db in
                    try Self.insert(stored, analysis: analysis, idempotencyKey: idempotencyKey, now: now, in: db)
                }
            } catch let error as PostgresError where attempt < 3 && Self.isRace(error) {
                logger.debug("retrying an entry insert after a race", metadata: ["sqlstate": "\(error.sqlState ?? "")", "attempt": "\(attempt)"])
                attempt += 1
            } catch {
                throw Self.storeError(error)
            }
        }
    }

    private static func insert(
        _ entry: Entry, analysis: String, idempotencyKey: String?, now: Int64, in db: any PostgresQuerying
    ) throws -> EntryInsertResult {
        let user = entry.userID
        if let idempotencyKey, let previous = try keyedEntry(in: db, user: user, key: idempotencyKey) {
            return .existing(previous)
        }
        if let previous = try Self.entry(in: db, user: user, id: entry.id) {
            return .existing(previous)
        }
        // A write acknowledged before its user was erased (an outbox replay) must not bring them
        // back: it counts as done and stores nothing. The second of margin absorbs clock skew
        // between instances and the database, so a new write is never taken for an old one; a
        // write made within that second (every direct write) skips the lookup altogether.
        let createdAt = UnixMilliseconds.from(entry.createdAt)
        if now - createdAt > 1000,
            try !db.query(
                """
                SELECT 1 FROM user_erasures
                WHERE user_tag = $1 AND erased_at > to_timestamp($2::bigint / 1000.0) + interval '1 second' LIMIT 1
                """,
                [.text(UserTag(user).hex), .integer(createdAt)]
            ).rows.isEmpty
        {
            return .existing(entry)
        }
        let inserted = try db.query(
            "INSERT INTO entries (\(entryColumns)) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            [
                .text(entry.id), .text(user), .text(entry.text),
                .integer(UnixMilliseconds.from(entry.createdAt)), .text(analysis), .text(entry.modelVersion),
            ]
        )
        if inserted.affectedRows == 0 {
            // Committed meanwhile by a replay of the same entry, or the id is someone else's.
            if let previous = try Self.entry(in: db, user: user, id: entry.id) { return .existing(previous) }
            throw StoreError(.failed, "entry id \(entry.id) is already taken by another user")
        }
        if let idempotencyKey, let winner = try claim(idempotencyKey, for: entry.id, user: user, now: now, in: db) {
            // Another write took the key first: it is the answer, and this entry must not stay.
            _ = try db.query("DELETE FROM entries WHERE user_id = $1 AND id = $2", [.text(user), .text(entry.id)])
            return .existing(winner)
        }
        _ = try db.query(
            """
            INSERT INTO users (id, tier, created_at, last_seen_at) VALUES ($1, $2, now(), now())
            ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at
            """,
            [.text(user), .text(Tier.standard.rawValue)]
        )
        return .inserted(entry)
    }

    /// The user's entry stored under `key`, if the key exists and its entry still does.
    private static func keyedEntry(in db: any PostgresQuerying, user: String, key: String) throws -> Entry? {
        guard let id = try keyHolder(in: db, user: user, key: key) else { return nil }
        return try entry(in: db, user: user, id: id)
    }

    private static func keyHolder(in db: any PostgresQuerying, user: String, key: String) throws -> String? {
        let rows = try db.query("SELECT entry_id FROM idempotency_keys WHERE user_id = $1 AND key = $2", [.text(user), .text(key)]).rows
        guard let row = rows.first else { return nil }
        return try string(row, 0)
    }

    /// Points `key` at `entryID`; returns the entry of the write that holds the key instead, if any.
    ///
    /// A key whose entry is gone (left by a deleted entry) is taken over, but only if it still
    /// points at that gone entry when updated, so two writers cannot both take it over.
    private static func claim(_ key: String, for entryID: String, user: String, now: Int64, in db: any PostgresQuerying) throws -> Entry? {
        for _ in 0..<5 {
            let claimed = try db.query(
                "INSERT INTO idempotency_keys (user_id, key, entry_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key) DO NOTHING",
                [.text(user), .text(key), .text(entryID), .integer(now)]
            )
            if claimed.affectedRows == 1 { return nil }
            // Taken (by a committed write: ON CONFLICT waited for any concurrent one to finish).
            guard let holder = try keyHolder(in: db, user: user, key: key) else { continue }
            if let winner = try entry(in: db, user: user, id: holder) { return winner }
            let takenOver = try db.query(
                "UPDATE idempotency_keys SET entry_id = $3, created_at = $4 WHERE user_id = $1 AND key = $2 AND entry_id = $5",
                [.text(user), .text(key), .text(entryID), .integer(now), .text(holder)]
            )
            if takenOver.affectedRows == 1 { return nil }
        }
        throw StoreError(.unavailable, "the idempotency key kept changing hands; retry")
    }

    /// `limit` below 1 counts as 1.
    public func entries(user: String, limit: Int, cursor: String?) async throws -> EntryPage {
        let limit = max(1, limit)
        let position: EntryCursor? = if let cursor { try EntryCursor(decoding: cursor) } else { nil }
        guard !Self.hasNUL(user) else { return EntryPage(entries: [], nextCursor: nil) }
        // One row more than asked tells whether there is a next page without a second query.
        let fetch = Int64(clamping: limit) < .max ? Int64(clamping: limit) + 1 : .max
        let result =
            if let position {
                try await query(
                    """
                    SELECT \(Self.entryColumns) FROM entries
                    WHERE user_id = $1 AND (created_at, id) < ($2, $3)
                    ORDER BY created_at DESC, id DESC LIMIT $4::bigint
                    """,
                    [.text(user), .integer(position.createdAtMilliseconds), .text(position.id), .integer(fetch)]
                )
            } else {
                try await query(
                    "SELECT \(Self.entryColumns) FROM entries WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2::bigint",
                    [.text(user), .integer(fetch)]
                )
            }
        let rows = try result.rows.map(Self.entry)
        guard rows.count > limit else { return EntryPage(entries: rows, nextCursor: nil) }
        let page = Array(rows.prefix(limit))
        return EntryPage(entries: page, nextCursor: page.last.map { EntryCursor(after: $0).encoded })
    }

    public func entry(user: String, id: String) async throws -> Entry? {
        guard !Self.hasNUL(user), !Self.hasNUL(id) else { return nil }
        return try await query(Self.entryByID, [.text(user), .text(id)]).rows.first.map(Self.entry)
    }

    public func entry(user: String, idempotencyKey: String) async throws -> Entry? {
        guard !Self.hasNUL(user), !Self.hasNUL(idempotencyKey) else { return nil }
        return try await query(
            "SELECT \(Self.entryColumns) FROM entries WHERE user_id = $1 AND id = (SELECT entry_id FROM idempotency_keys WHERE user_id = $1 AND key = $2)",
            [.text(user), .text(idempotencyKey)]
        ).rows.first.map(Self.entry)
    }

    /// Also forgets the idempotency keys that pointed at the entry (one statement, so atomically).
    public func deleteEntry(user: String, id: String) async throws -> Bool {
        guard !Self.hasNUL(user), !Self.hasNUL(id) else { return false }
        let result = try await query(
            """
            WITH gone AS (DELETE FROM entries WHERE user_id = $1 AND id = $2 RETURNING id),
                 keys AS (DELETE FROM idempotency_keys WHERE user_id = $1 AND entry_id IN (SELECT id FROM gone) RETURNING 1)
            SELECT count(*) FROM gone
            """,
            [.text(user), .text(id)]
        )
        return try Self.count(result) > 0
    }

    /// Empty when `limit` is below 1.
    public func recentEntries(user: String, limit: Int) async throws -> [Entry] {
        guard limit > 0, !Self.hasNUL(user) else { return [] }
        return try await query(
            "SELECT \(Self.entryColumns) FROM entries WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2::bigint",
            [.text(user), .integer(Int64(clamping: limit))]
        ).rows.map(Self.entry)
    }

    /// The cluster's system identifier and the database's name. A role that may not execute
    /// `pg_control_system()` gets the name alone (and a warning once).
    public func identity() async throws -> DatabaseIdentity? {
        let names = try await query("SELECT current_database()", []).rows
        let name = try names.first.map { try Self.string($0, 0) } ?? ""
        let system: String?
        do {
            let rows = try await query("SELECT system_identifier::text FROM pg_control_system()", []).rows
            system = try rows.first.map { try Self.string($0, 0) }
        } catch {
            guard (error as? StoreError)?.code == .failed else { throw error }
            if !warnedUnreadableIdentity.exchange(true, ordering: .relaxed) {
                logger.warning(
                    "pg_control_system() is not readable by this role; the outbox compares the database name only",
                    metadata: ["error.message": "\(error)"])
            }
            system = nil
        }
        return DatabaseIdentity(systemIdentifier: system, name: name)
    }

    /// The ids of `user`'s stored entries in the order the database received them (its `received`
    /// counter), with that counter: what an audit compares with the order the writes were
    /// acknowledged in. Not part of `Store`: only PostgreSQL, shared by instances, can be fed out of order.
    public func receivedOrder(user: String) async throws -> [(id: String, received: Int64)] {
        guard !Self.hasNUL(user) else { return [] }
        return try await query("SELECT id, received FROM entries WHERE user_id = $1 ORDER BY received", [.text(user)]).rows.map {
            row throws(StoreError) in (id: try Self.string(row, 0), received: try Self.int64(row, 1))
        }
    }

    public func mostActiveUsers(limit: Int) async throws -> [String] {
        guard limit > 0 else { return [] }
        return try await query(
            "SELECT user_id, count(*) AS n FROM entries GROUP BY user_id ORDER BY n DESC, user_id LIMIT $1::bigint",
            [.integer(Int64(clamping: limit))]
        ).rows.map { row throws(StoreError) in try Self.string(row, 0) }
    }

    // MARK: - Profiles

    public func profile(user: String) async throws -> ProfileSnapshot? {
        guard !Self.hasNUL(user) else { return nil }
        let rows = try await query("SELECT snapshot_raw, updated_at FROM profiles WHERE user_id = $1", [.text(user)]).rows
        guard let row = rows.first else { return nil }
        return ProfileSnapshot(userID: user, snapshot: Array(try Self.string(row, 0).utf8), updatedAt: UnixMilliseconds.date(try Self.int64(row, 1)))
    }

    /// `updatedAt` is kept at millisecond precision. The snapshot must be JSON (UTF-8, no NUL).
    public func saveProfile(_ profile: ProfileSnapshot) async throws {
        guard let snapshot = String(validating: profile.snapshot, as: UTF8.self) else {
            throw StoreError(.failed, "the profile snapshot is not UTF-8")
        }
        try Self.requireNoNUL(profile.userID, "user id")
        try Self.requireNoNUL(snapshot, "profile snapshot")
        _ = try await query(
            """
            INSERT INTO profiles (user_id, snapshot_raw, updated_at) VALUES ($1, $2, $3)
            ON CONFLICT (user_id) DO UPDATE SET snapshot_raw = excluded.snapshot_raw, updated_at = excluded.updated_at
            """,
            [.text(profile.userID), .text(snapshot), .integer(UnixMilliseconds.from(profile.updatedAt))]
        )
    }

    // MARK: - Erasure and health

    /// One statement, so the four deletions and the erasure notice happen atomically (notices
    /// older than `erasureRetention` go in the same statement).
    public func deleteUser(_ userID: String) async throws -> UserErasure {
        guard !Self.hasNUL(userID) else { return UserErasure() }
        let result = try await query(
            """
            WITH e AS (DELETE FROM entries WHERE user_id = $1 RETURNING 1),
                 p AS (DELETE FROM profiles WHERE user_id = $1 RETURNING 1),
                 k AS (DELETE FROM idempotency_keys WHERE user_id = $1 RETURNING 1),
                 u AS (DELETE FROM users WHERE id = $1 RETURNING 1),
                 n AS (INSERT INTO user_erasures (user_tag) VALUES ($2) RETURNING 1),
                 old AS (DELETE FROM user_erasures WHERE erased_at < now() - interval '\(Self.erasureRetention)' RETURNING 1)
            SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM p), (SELECT count(*) FROM k), (SELECT count(*) FROM u),
                   (SELECT count(*) FROM n), (SELECT count(*) FROM old)
            """,
            [.text(userID), .text(UserTag(userID).hex)]
        )
        guard let row = result.rows.first else { throw StoreError(.failed, "the erasure answered no row") }
        return UserErasure(
            entries: try Self.int(row, 0), profiles: try Self.int(row, 1),
            idempotencyKeys: try Self.int(row, 2), user: try Self.int(row, 3) > 0
        )
    }

    public func erasures(after id: Int64, limit: Int) async throws -> [ErasureNotice] {
        let result = try await query(
            "SELECT id, user_tag FROM user_erasures WHERE id > $1 ORDER BY id LIMIT $2", [.integer(id), .integer(Int64(max(1, limit)))])
        return try result.rows.compactMap { row in
            guard let tag = UserTag(hex: try Self.string(row, 1)) else { return nil }
            return ErasureNotice(id: try Self.int64(row, 0), user: tag)
        }
    }

    public func isHealthy() async -> Bool {
        guard let result = try? await client.query("SELECT 1", []) else { return false }
        return result.rows.first?.int64(0) == 1
    }

    // MARK: - Calls and errors

    private func query(_ sql: String, _ parameters: [PostgresValue]) async throws(StoreError) -> PostgresResult {
        do {
            return try await client.query(sql, parameters)
        } catch {
            throw Self.storeError(error)
        }
    }

    private func transaction<T: Sendable>(_ body: @Sendable (any PostgresQuerying) throws -> T) async throws(StoreError) -> T {
        do {
            return try await client.withTransaction(body)
        } catch {
            throw Self.storeError(error)
        }
    }

    /// SQLSTATEs of a lost race between writers, which a rerun of the transaction settles:
    /// unique_violation, serialization_failure, deadlock_detected.
    private static func isRace(_ error: PostgresError) -> Bool {
        error.code == .query && ["23505", "40001", "40P01"].contains(error.sqlState ?? "")
    }

    /// SQLSTATEs that say the server cannot serve now rather than that the statement is wrong:
    /// connection exceptions (08), insufficient resources (53), operator intervention (57: shutdown,
    /// statement timeout), and lost races (40).
    private static func isTransient(_ sqlState: String) -> Bool {
        ["08", "53", "57", "40"].contains(String(sqlState.prefix(2)))
    }

    /// `StoreError`s pass through; `PostgresError`s map to `.unavailable` (cannot reach or serve now)
    /// or `.failed` (refused: a constraint, the schema, a bug).
    static func storeError(_ error: any Error) -> StoreError {
        if let error = error as? StoreError { return error }
        if error is CancellationError { return StoreError(.unavailable, "PostgreSQL: cancelled while waiting for a connection") }
        guard let error = error as? PostgresError else { return StoreError(.failed, "PostgreSQL: \(error)") }
        let state = error.sqlState.map { " [\($0)]" } ?? ""
        switch error.code {
        case .connect, .io, .timeout, .closed:
            return StoreError(.unavailable, "PostgreSQL (\(error.code))\(state): \(error.message)")
        case .query where isTransient(error.sqlState ?? ""):
            return StoreError(.unavailable, "PostgreSQL\(state): \(error.message)")
        default:
            return StoreError(.failed, "PostgreSQL (\(error.code))\(state): \(error.message)")
        }
    }

    // MARK: - Values

    private static func hasNUL(_ text: String) -> Bool { text.utf8.contains(0) }

    private static func requireNoNUL(_ text: String, _ what: String) throws(StoreError) {
        if hasNUL(text) { throw StoreError(.failed, "PostgreSQL cannot store the NUL character in the \(what)") }
    }

    private static func string(_ row: PostgresRow, _ column: Int) throws(StoreError) -> String {
        guard let value = row.string(column) else { throw StoreError(.failed, "column \(column) is NULL or not text") }
        return value
    }

    private static func int64(_ row: PostgresRow, _ column: Int) throws(StoreError) -> Int64 {
        guard let value = row.int64(column) else { throw StoreError(.failed, "column \(column) is NULL or not an integer") }
        return value
    }

    private static func int(_ row: PostgresRow, _ column: Int) throws(StoreError) -> Int {
        Int(try int64(row, column))
    }

    private static func count(_ result: PostgresResult) throws(StoreError) -> Int {
        guard let row = result.rows.first else { throw StoreError(.failed, "a count answered no row") }
        return try int(row, 0)
    }
}
