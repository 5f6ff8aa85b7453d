import CSQLite
import Foundation

/// A value bound to a `?` parameter of a statement.
enum SQLiteValue {
    case integer(Int64)
    case text(String)
    /// UTF-8 bytes bound as TEXT (the JSON columns): stored and read back byte for byte.
    case textBytes([UInt8])
    case null
}

/// One row of a result, valid only inside the closure it is passed to.
struct SQLiteRow: ~Copyable {
    fileprivate let statement: OpaquePointer

    /// The integer in column `index` (0 for NULL).
    func int64(_ index: Int32) -> Int64 {
        sqlite3_column_int64(statement, index)
    }

    /// The TEXT in column `index` as raw bytes (empty for NULL).
    func bytes(_ index: Int32) -> [UInt8] {
        // `column_text` first, then `column_bytes`: the order SQLite documents for a stable length.
        guard let pointer = sqlite3_column_text(statement, index) else { return [] }
        let count = Int(sqlite3_column_bytes(statement, index))
        return Array(UnsafeBufferPointer(start: pointer, count: count))
    }

    /// The TEXT in column `index` as a string (empty for NULL).
    func text(_ index: Int32) -> String {
        guard let pointer = sqlite3_column_text(statement, index) else { return "" }
        let count = Int(sqlite3_column_bytes(statement, index))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }
}

/// One open SQLite connection with its prepared-statement cache.
///
/// Not thread-safe and not `Sendable`: `SQLiteStore` keeps the only reference inside a `Mutex`,
/// so at most one thread uses it at a time. Closing happens in `deinit`.
final class SQLiteConnection {
    /// The `sqlite3 *` handle.
    private let db: OpaquePointer
    /// Prepared statements keyed by their SQL text, prepared once and reset after every use.
    private var statements: [String: OpaquePointer] = [:]
    /// Whether the file is a real file (WAL applies) rather than an in-memory database.
    let isInMemory: Bool

    /// Opens (creating if needed) the database at `path`; `":memory:"` opens a private in-memory one.
    init(path: String, busyTimeout: Duration) throws(StoreError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw StoreError(.unavailable, "cannot open SQLite database at \(path): \(message) (\(rc))")
        }
        db = handle
        isInMemory = path == ":memory:"
        sqlite3_extended_result_codes(db, 1)
        let milliseconds = busyTimeout.components.seconds * 1_000 + busyTimeout.components.attoseconds / 1_000_000_000_000_000
        // Set before any pragma: switching to WAL takes a lock another process may hold.
        sqlite3_busy_timeout(db, Int32(clamping: milliseconds))
        if !isInMemory {
            let mode = try query("PRAGMA journal_mode=WAL") { $0.text(0) }.first ?? ""
            guard mode.lowercased() == "wal" else {
                throw StoreError(.failed, "SQLite refused WAL journal mode (got \"\(mode)\") for \(path)")
            }
        }
        try execute("PRAGMA synchronous=FULL")
        try execute("PRAGMA foreign_keys=ON")
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(db)
    }

    /// Runs a statement that returns no rows; returns how many rows it changed.
    @discardableResult
    func execute(_ sql: String, _ parameters: [SQLiteValue] = []) throws(StoreError) -> Int {
        let statement = try prepared(sql)
        defer { sqlite3_reset(statement) }
        try bind(parameters, to: statement, sql: sql)
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            if rc != SQLITE_ROW { throw failure(rc, sql: sql) }
        }
        return Int(sqlite3_changes(db))
    }

    /// Runs a query and maps every row with `transform`.
    func query<Row>(_ sql: String, _ parameters: [SQLiteValue] = [], _ transform: (borrowing SQLiteRow) throws(StoreError) -> Row) throws(StoreError) -> [Row] {
        let statement = try prepared(sql)
        // Resetting releases the read snapshot a finished or abandoned statement would keep open.
        defer { sqlite3_reset(statement) }
        try bind(parameters, to: statement, sql: sql)
        var rows: [Row] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw failure(rc, sql: sql) }
            rows.append(try transform(SQLiteRow(statement: statement)))
        }
        return rows
    }

    /// Runs `body` in a write transaction taken with `BEGIN IMMEDIATE`, so the write lock is held
    /// (or waited for, up to the busy timeout) from the start and a concurrent writer cannot make
    /// the transaction fail halfway; rolls back when `body` throws.
    func transaction<Result>(_ body: () throws(StoreError) -> Result) throws(StoreError) -> Result {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            // ROLLBACK fails only when SQLite already rolled back; the first error is the one to report.
            _ = try? execute("ROLLBACK")
            throw error
        }
    }

    /// Runs a ';'-free DDL or pragma statement without caching it.
    func executeOnce(_ sql: String) throws(StoreError) {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v2(db, sql, -1, &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw failure(rc, sql: sql) }
        defer { sqlite3_finalize(statement) }
        while true {
            let step = sqlite3_step(statement)
            if step == SQLITE_DONE { return }
            if step != SQLITE_ROW { throw failure(step, sql: sql) }
        }
    }

    // MARK: - Internals

    private func prepared(_ sql: String) throws(StoreError) -> OpaquePointer {
        if let cached = statements[sql] { return cached }
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw failure(rc, sql: sql) }
        statements[sql] = statement
        return statement
    }

    private func bind(_ parameters: [SQLiteValue], to statement: OpaquePointer, sql: String) throws(StoreError) {
        sqlite3_clear_bindings(statement)
        let expected = Int(sqlite3_bind_parameter_count(statement))
        guard expected == parameters.count else {
            throw StoreError(.failed, "statement expects \(expected) parameters, got \(parameters.count): \(sql)")
        }
        for (offset, value) in parameters.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .integer(let n):
                rc = sqlite3_bind_int64(statement, index, n)
            case .text(let s):
                rc = Self.bindText(Array(s.utf8), statement, index)
            case .textBytes(let bytes):
                rc = Self.bindText(bytes, statement, index)
            case .null:
                rc = sqlite3_bind_null(statement, index)
            }
            guard rc == SQLITE_OK else { throw failure(rc, sql: sql) }
        }
    }

    private static func bindText(_ bytes: [UInt8], _ statement: OpaquePointer, _ index: Int32) -> Int32 {
        bytes.withUnsafeBufferPointer { buffer in
            // An empty array may have no base address, and a NULL pointer would bind SQL NULL, not ''.
            guard let base = buffer.baseAddress, !buffer.isEmpty else {
                return sqlite3_bind_text(statement, index, "", 0, soma_sqlite_transient())
            }
            return base.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                sqlite3_bind_text(statement, index, $0, Int32(buffer.count), soma_sqlite_transient())
            }
        }
    }

    private func failure(_ rc: Int32, sql: String) -> StoreError {
        let message = String(cString: sqlite3_errmsg(db))
        return StoreError(Self.code(for: rc), "SQLite error \(rc) (\(message)) in: \(sql)")
    }

    /// `.unavailable` when waiting or retrying may help (lock contention past the busy timeout,
    /// a file that cannot be opened or read, a full disk); `.failed` for everything else.
    static func code(for rc: Int32) -> StoreError.Code {
        switch rc & 0xFF {
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CANTOPEN, SQLITE_IOERR, SQLITE_FULL, SQLITE_PROTOCOL:
            .unavailable
        default:
            .failed
        }
    }
}
