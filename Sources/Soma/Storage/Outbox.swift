public import Foundation
import Synchronization

/// The instance's local, durable queue of entry writes the store could not take (PostgreSQL
/// unavailable: its circuit breaker open, or a timeout). `POST /v1/entries` enqueues here and
/// answers 202 `"persisted": "queued"`; `OutboxReplayer` replays the queue into the store, oldest
/// first, once the store is back.
///
/// One SQLite file in the instance's state directory, in WAL mode with `synchronous=FULL`: when
/// `enqueue` returns, the entry is committed and on disk, and survives a crash or a restart. The
/// file belongs to one instance: open it from one process, through one `Outbox`, at a time
/// (`pendingCount` is this instance's running count, not re-read from the file).
///
/// Like `SQLiteStore`, one connection serves every call under a `Mutex`, and SQLite calls run
/// synchronously on the calling thread (an enqueue costs one small transaction and its fsync).
/// Failures throw `StoreError` (`.unavailable` for a locked, unreadable or full disk).
///
/// Entries keep the exact bytes of `analysis` (stored as a BLOB) and `createdAt` at millisecond
/// precision, as stores do.
///
/// Every queued entry is stamped with the database it was acknowledged for: `pg:<identity>` once
/// the database's identity is known (`bind(to:)`, remembered per configured target across
/// restarts), `target:<target>` before that. Only entries with the current stamp are pending and
/// replayed; the others are *held*: kept in the file, never replayed into a database they were
/// not written for (a state directory that outlives a re-pointed `DATABASE_URL`), and reported
/// (`Health.held`, `soma_outbox_held`). Erasing a user removes their held entries too.
public final class Outbox: Sendable {
    /// How long a statement waits for a lock before failing.
    public static let busyTimeout = Duration.seconds(5)

    private struct State {
        /// `nil` once `close()` ran.
        var connection: SQLiteConnection?
        /// Rows with the current stamp, kept in step with every insert and delete.
        var pending: Int
        /// Rows with another stamp.
        var held: Int
        /// What new rows are stamped with, and which rows are pending.
        var stamp: String
    }

    private let state: Mutex<State>
    /// Where the outbox file lives.
    public let path: String
    /// The file's identity (device, inode) when it was opened: a file removed or replaced under an
    /// open connection still takes writes, which the next start would never see.
    private let identity: FileIdentity?
    /// The configured database (`DATABASE_URL` without its credentials) this outbox queues for.
    public let target: String

    /// Schema, idempotent. `seq` (AUTOINCREMENT: never reused, even after the last row is deleted)
    /// is the replay order.
    private static let schema = [
        """
        CREATE TABLE IF NOT EXISTS outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            idempotency_key TEXT,
            entry_id TEXT NOT NULL UNIQUE,
            database TEXT,
            text TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            analysis BLOB NOT NULL,
            model_version TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        )
        """,
        // One row, rewritten by `probe()`: health proves the file takes a committed write.
        "CREATE TABLE IF NOT EXISTS outbox_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL)",
        // The identity each configured target was last found to have.
        "CREATE TABLE IF NOT EXISTS outbox_database (target TEXT PRIMARY KEY, identity TEXT NOT NULL)",
    ]

    /// After the schema: files written before entries were stamped gain the column, and the
    /// Idempotency-Key is unique per database.
    private static let upgrade = [
        "DROP INDEX IF EXISTS outbox_user_idempotency_key",
        """
        CREATE UNIQUE INDEX IF NOT EXISTS outbox_database_user_idempotency_key
        ON outbox (database, user_id, idempotency_key) WHERE idempotency_key IS NOT NULL
        """,
    ]

    /// Opens (creating the file, its parent directories and the table if needed) the outbox at
    /// `path`, queueing for `target` (the configured database, without credentials). Entries of a
    /// file written before entries were stamped are taken to belong to `target`. Throws
    /// `StoreError` when the file cannot be opened or is not durable.
    public init(path: String, target: String) throws {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.unavailable, "cannot create directory \(directory.path) for the outbox: \(error)")
        }
        // The connection sets WAL, `synchronous=FULL` and the busy timeout.
        let connection = try SQLiteConnection(path: path, busyTimeout: Self.busyTimeout)
        // 2 = FULL, 3 = EXTRA: a commit is fsync'd before it returns.
        let synchronous = try connection.query("PRAGMA synchronous") { $0.int64(0) }.first ?? 0
        guard synchronous >= 2 else {
            throw StoreError(.failed, "SQLite refused synchronous=FULL (got \(synchronous)) for the outbox at \(path)")
        }
        let state = try connection.transaction { () throws(StoreError) -> State in
            for statement in Self.schema { try connection.executeOnce(statement) }
            let columns = try connection.query("SELECT name FROM pragma_table_info('outbox')") { $0.text(0) }
            if !columns.contains("database") { try connection.executeOnce("ALTER TABLE outbox ADD COLUMN database TEXT") }
            for statement in Self.upgrade { try connection.executeOnce(statement) }
            let known = try connection.query("SELECT identity FROM outbox_database WHERE target = ?", [.text(target)]) { $0.text(0) }.first
            let stamp = known.map { "pg:" + $0 } ?? "target:" + target
            _ = try connection.execute("UPDATE outbox SET database = ? WHERE database IS NULL", [.text(stamp)])
            var state = State(connection: connection, pending: 0, held: 0, stamp: stamp)
            try Self.recount(connection, &state)
            return state
        }
        self.state = Mutex(state)
        self.path = path
        self.target = target
        self.identity = FileIdentity(path: path)
    }

    /// Re-reads the pending and held counts.
    private static func recount(_ db: SQLiteConnection, _ state: inout State) throws(StoreError) {
        let counts =
            try db.query("SELECT count(*), coalesce(sum(database = ?), 0) FROM outbox", [.text(state.stamp)]) { ($0.int64(0), $0.int64(1)) }.first ?? (0, 0)
        state.pending = Int(counts.1)
        state.held = Int(counts.0 - counts.1)
    }

    // MARK: - The database

    /// Records that the configured target is the database `identity`: entries queued for the target
    /// before its identity was known are stamped with it, new entries will be, and entries stamped
    /// with another identity are held from now on (or pending again, when they were written for
    /// this one). Remembered in the file for the next start. Returns the held count.
    @discardableResult
    public func bind(to identity: DatabaseIdentity) throws -> Int {
        let stamp = "pg:" + identity.description
        return try state.withLock { (state: inout State) throws(StoreError) -> Int in
            guard let db = state.connection else { throw StoreError(.unavailable, "the outbox at \(path) is closed") }
            guard stamp != state.stamp else { return state.held }
            var next = state
            try db.transaction { () throws(StoreError) in
                _ = try db.execute(
                    "INSERT INTO outbox_database (target, identity) VALUES (?, ?) ON CONFLICT (target) DO UPDATE SET identity = excluded.identity",
                    [.text(target), .text(identity.description)])
                _ = try db.execute("UPDATE outbox SET database = ? WHERE database = ?", [.text(stamp), .text("target:" + target)])
                next.stamp = stamp
                try Self.recount(db, &next)
            }
            state = next
            return state.held
        }
    }

    /// What new entries are stamped with: `pg:<identity>` or `target:<target>`.
    public var stamp: String { state.withLock { $0.stamp } }

    /// Closes the file; every later call fails with `StoreError(.unavailable)`. What is queued stays
    /// in the file for the next `Outbox` opened on it.
    public func close() {
        state.withLock { $0.connection = nil }
    }

    // MARK: - Writing

    /// Queues `entry`, durably: when this returns the entry is committed to disk.
    ///
    /// Idempotent like a store: when the same user already queued an entry under `idempotencyKey`,
    /// or already queued this very entry id, returns `.existing` with the queued entry and writes
    /// nothing. An entry id queued by another user throws `StoreError(.failed)`.
    ///
    /// `.inserted` carries the entry as it will be replayed (`createdAt` rounded to the millisecond).
    public func enqueue(_ entry: Entry, idempotencyKey: String?) throws -> EntryInsertResult {
        let milliseconds = UnixMilliseconds.from(entry.createdAt)
        var stored = entry
        stored.createdAt = UnixMilliseconds.date(milliseconds)
        return try withState { [stored] db, state throws(StoreError) -> EntryInsertResult in
            let stamp = state.stamp
            let result = try db.transaction { () throws(StoreError) -> EntryInsertResult in
                if let idempotencyKey,
                    let previous = try Self.queued(
                        in: db, where: "database = ? AND user_id = ? AND idempotency_key = ?", [.text(stamp), .text(stored.userID), .text(idempotencyKey)]
                    ).first
                {
                    return .existing(previous.entry)
                }
                if let previous = try Self.queued(in: db, where: "entry_id = ?", [.text(stored.id)]).first {
                    guard previous.entry.userID == stored.userID else {
                        throw StoreError(.failed, "entry id \(stored.id) is already queued for another user")
                    }
                    return .existing(previous.entry)
                }
                // `CAST(? AS BLOB)`: the bytes are bound as TEXT (the connection binds no BLOBs) and
                // stored as a BLOB, byte for byte, NULs and invalid UTF-8 included.
                try db.execute(
                    """
                    INSERT INTO outbox (user_id, idempotency_key, entry_id, text, created_at, analysis, model_version, database)
                    VALUES (?, ?, ?, ?, ?, CAST(? AS BLOB), ?, ?)
                    """,
                    [
                        .text(stored.userID), idempotencyKey.map { .text($0) } ?? .null, .text(stored.id), .text(stored.text),
                        .integer(milliseconds), .textBytes(stored.analysis), .text(stored.modelVersion), .text(stamp),
                    ]
                )
                return .inserted(stored)
            }
            if case .inserted = result { state.pending += 1 }
            return result
        }
    }

    /// Drops every queued entry of `userID`, held ones included (erasing a user must not let a
    /// later replay bring their entries back); returns how many there were.
    @discardableResult
    public func deleteUser(_ userID: String) throws -> Int {
        try withState { db, state throws(StoreError) -> Int in
            let removed = try db.execute("DELETE FROM outbox WHERE user_id = ?", [.text(userID)])
            try Self.recount(db, &state)
            return removed
        }
    }

    /// Drops every queued entry of the user tagged `tag` (an erasure made through another
    /// instance, known here only by its notice); returns how many there were.
    @discardableResult
    public func deleteUser(tagged tag: UserTag) throws -> Int {
        try withState { db, state throws(StoreError) -> Int in
            let users = try db.query("SELECT DISTINCT user_id FROM outbox") { $0.text(0) }.filter { UserTag($0) == tag }
            var removed = 0
            for user in users { removed += try db.execute("DELETE FROM outbox WHERE user_id = ?", [.text(user)]) }
            try Self.recount(db, &state)
            return removed
        }
    }

    /// Removes several replayed entries in one transaction (one fsync). Removing one that is not
    /// there (any more) does nothing. The counts follow from the rows removed (a recount would scan
    /// the whole table once per replayed batch).
    public func remove(seqs: [Int64]) throws {
        guard !seqs.isEmpty else { return }
        try withState { db, state throws(StoreError) in
            var pending = 0
            var held = 0
            try db.transaction { () throws(StoreError) in
                for seq in seqs {
                    for wasPending in try db.query(
                        "DELETE FROM outbox WHERE seq = ? RETURNING database = ?", [.integer(seq), .text(state.stamp)], { $0.int64(0) != 0 })
                    {
                        if wasPending { pending += 1 } else { held += 1 }
                    }
                }
            }
            state.pending -= pending
            state.held -= held
        }
    }

    /// Removes the queued entry `seq` (it reached the store).
    public func remove(seq: Int64) throws {
        try remove(seqs: [seq])
    }

    /// Records a failed replay of `seq`: one more attempt, and `error` as the last error.
    public func recordFailure(seq: Int64, error: String) throws {
        try withState { db, _ throws(StoreError) in
            _ = try db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                [.text(error), .integer(seq)]
            )
        }
    }

    // MARK: - Reading

    /// How many entries are queued for the current database (the backlog to replay). Cheap: a
    /// running count, no query.
    public var pendingCount: Int { state.withLock { $0.pending } }

    /// How many entries are held: queued for another database, kept and not replayed.
    public var heldCount: Int { state.withLock { $0.held } }

    /// The entry `user` queued under `idempotencyKey` for the current database, if it is still queued.
    public func queued(user: String, idempotencyKey: String) throws -> Entry? {
        try withState { db, state throws(StoreError) in
            try Self.queued(
                in: db, where: "database = ? AND user_id = ? AND idempotency_key = ?", [.text(state.stamp), .text(user), .text(idempotencyKey)]
            ).first?.entry
        }
    }

    /// The oldest `limit` entries queued for the current database, in queue (`seq`) order: the
    /// order to replay them in. Empty when `limit` is below 1.
    public func oldest(limit: Int) throws -> [(seq: Int64, entry: Entry, idempotencyKey: String?)] {
        guard limit > 0 else { return [] }
        return try withState { db, state throws(StoreError) in
            try Self.queued(in: db, where: "database = ? ORDER BY seq LIMIT ?", [.text(state.stamp), .integer(Int64(clamping: limit))]).map {
                (seq: $0.seq, entry: $0.entry, idempotencyKey: $0.idempotencyKey)
            }
        }
    }

    /// How often replaying `seq` failed and the last error; `nil` when `seq` is not queued.
    public func attempts(seq: Int64) throws -> (count: Int, lastError: String?)? {
        try withState { db, _ throws(StoreError) in
            try db.query(
                "SELECT attempts, last_error, last_error IS NOT NULL FROM outbox WHERE seq = ?",
                [.integer(seq)]
            ) { row in
                (count: Int(row.int64(0)), lastError: row.int64(2) != 0 ? row.text(1) : nil)
            }.first
        }
    }

    /// The outbox's health: whether it takes a committed write now, how much waits and since when.
    public struct Health: Sendable, Equatable {
        public var writable: Bool
        public var pending: Int
        /// Entries queued for another database (see the type).
        public var held: Int = 0
        /// Age of the oldest queued entry (by its acknowledgement time); `nil` when none is queued
        /// or the file cannot be read.
        public var oldestPendingAge: Duration?
        /// Why it is not writable, for logs and `/health`.
        public var problem: String?
    }

    /// Probes the file: still the file this outbox opened (not removed or replaced), and taking a
    /// real committed write (one small transaction and its fsync), so a closed outbox, a lost
    /// file, a read-only or full disk all show as not writable. Cheap enough for every health
    /// check and scrape.
    public func probe(now: Date = Date()) -> Health {
        var health = Health(writable: true, pending: pendingCount, held: heldCount)
        guard let identity, FileIdentity(path: path) == identity else {
            health.writable = false
            health.problem = "the outbox file at \(path) was removed or replaced: writes would not survive a restart"
            return health
        }
        do {
            let nowMS = UnixMilliseconds.from(now)
            let (oldest, heldFor): (Int64?, [String]) = try withState { db, state throws(StoreError) in
                _ = try db.execute("INSERT OR REPLACE INTO outbox_probe (id, at) VALUES (1, ?)", [.integer(nowMS)])
                let oldest =
                    try db.query("SELECT min(created_at), count(*) FROM outbox WHERE database = ?", [.text(state.stamp)]) {
                        $0.int64(1) > 0 ? $0.int64(0) : nil
                    }.first ?? nil
                let others =
                    state.held == 0 ? [] : try db.query("SELECT DISTINCT database FROM outbox WHERE database <> ? LIMIT 5", [.text(state.stamp)]) { $0.text(0) }
                return (oldest, others)
            }
            health.oldestPendingAge = oldest.map { .milliseconds(max(0, nowMS - $0)) }
            if health.held > 0 {
                health.problem =
                    "\(health.held) queued entries belong to another database (\(heldFor.joined(separator: ", "))) than this instance's "
                    + "(\(stamp)): they are kept in \(path) and not replayed here (docs/OPERATIONS.md, the outbox)"
            }
        } catch {
            health.writable = false
            health.problem = error.detail
        }
        return health
    }

    // MARK: - Internals

    private struct Queued: Sendable {
        var seq: Int64
        var entry: Entry
        var idempotencyKey: String?
    }

    /// The queued rows matching `condition` (SQL after `WHERE`, with its parameters).
    private static func queued(in db: SQLiteConnection, where condition: String, _ parameters: [SQLiteValue]) throws(StoreError) -> [Queued] {
        try db.query(
            """
            SELECT seq, entry_id, user_id, text, created_at, analysis, model_version,
                   idempotency_key, idempotency_key IS NOT NULL
            FROM outbox WHERE \(condition)
            """,
            parameters
        ) { row in
            Queued(
                seq: row.int64(0),
                entry: Entry(
                    id: row.text(1), userID: row.text(2), text: row.text(3),
                    createdAt: UnixMilliseconds.date(row.int64(4)), analysis: row.bytes(5), modelVersion: row.text(6)
                ),
                // A NULL reads as "", so the `IS NOT NULL` column tells NULL from an empty key.
                idempotencyKey: row.int64(8) != 0 ? row.text(7) : nil
            )
        }
    }

    /// Runs `body` with the connection and the state while holding the lock.
    private func withState<Result: Sendable>(
        _ body: (SQLiteConnection, inout State) throws(StoreError) -> Result
    ) throws(StoreError) -> Result {
        try state.withLock { (state: inout State) throws(StoreError) -> Result in
            guard let db = state.connection else { throw StoreError(.unavailable, "the outbox at \(path) is closed") }
            return try body(db, &state)
        }
    }
}

/// A file's device and inode number.
private struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64

    init?(path: String) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let device = (attributes[.systemNumber] as? NSNumber)?.uint64Value,
            let inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value
        else { return nil }
        (self.device, self.inode) = (device, inode)
    }
}
