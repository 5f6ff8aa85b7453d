public import ServiceLifecycle

/// A small PostgreSQL client over libpq (blocking API, text results, parameterised statements only) with a
/// lazily filled connection pool.
///
/// Every blocking libpq call runs on a serial `DispatchQueue` owned by its connection — never on the Swift
/// cooperative pool or a NIO event loop; callers suspend until the call completes.
///
/// Statements:
/// - Always `PQexecParams` with `$1…$n` placeholders: values travel separately from the SQL and are never
///   spliced into it (so one call runs one statement). See ``PostgresValue`` for how each value is sent.
/// - Results come back in text format; ``PostgresRow`` reads them as text, integers, booleans, bytes, doubles.
///
/// Connections (set on connect): `statement_timeout` = `queryTimeout`, `bytea_output=hex`,
/// `client_encoding=UTF8`, `application_name`, TCP keepalives (idle 1 s, interval 1 s, 2 probes) and
/// `tcp_user_timeout` = `queryTimeout`. These replace the same keywords from the URL's query string.
///
/// Timeouts and failures:
/// - Connecting is bounded by ``Configuration/connectTimeout`` (not counting host name resolution) → ``PostgresError/Code/connect``.
/// - A statement running longer than ``Configuration/queryTimeout`` is cancelled by the server →
///   ``PostgresError/Code/timeout`` with SQLSTATE `57014`; the connection stays in the pool.
/// - A call that has no answer within `queryTimeout + 1 s` (a frozen server, a dead network) has its socket
///   shut down from another thread → ``PostgresError/Code/timeout`` without SQLSTATE; the connection is closed.
/// - A connection whose call failed with a connect, I/O or client-side timeout error, or whose status is
///   `CONNECTION_BAD`, is closed (`PQfinish`) and re-created on its next use. Before an idle connection is
///   reused it is checked without a round trip (status, transaction state, and whether the server sent
///   anything — a terminated backend's message or the end of the stream); after a connect or I/O failure
///   (server gone or restarted) all idle connections are re-created. So a restarted server costs at most
///   one failed call per caller in flight.
/// - Nothing is retried automatically (a statement may have run before its connection broke).
/// - A task cancelled while waiting for a free connection stops waiting at once; one cancelled while its call
///   is on the wire still waits for that call (bounded as above).
///
/// Session state (`SET`, advisory locks, temporary tables, prepared statements) stays with the connection
/// and is seen by later leases of it: undo it inside the same ``withConnection(_:)`` body. A body that leaves
/// a transaction open is rolled back when it returns.
public final class PostgresClient: Service, Sendable {
    /// How to connect and how many connections to keep.
    public struct Configuration: Sendable {
        /// Server, credentials, database and extra libpq keywords.
        public var url: PostgresURL
        /// Maximum number of connections (at least 1).
        public var poolSize: Int
        /// Timeout for establishing a connection (TCP connect, TLS if any, authentication).
        public var connectTimeout: Duration
        /// The server's `statement_timeout` (at least 1 ms), and — plus 1 s — the client's deadline for every call.
        public var queryTimeout: Duration
        /// `application_name` of every connection (visible in `pg_stat_activity`); `nil` keeps the URL's or none.
        public var applicationName: String?

        /// Creates a configuration; the defaults are 4 connections and 2 s timeouts.
        public init(
            url: PostgresURL,
            poolSize: Int = 4,
            connectTimeout: Duration = .seconds(2),
            queryTimeout: Duration = .seconds(2),
            applicationName: String? = nil
        ) {
            self.url = url
            self.poolSize = poolSize
            self.connectTimeout = connectTimeout
            self.queryTimeout = queryTimeout
            self.applicationName = applicationName
        }
    }

    /// A snapshot of the pool.
    public struct PoolStats: Sendable, Hashable {
        /// Connections with an open `PGconn` right now (never more than the pool size).
        public var open: Int
        /// Connection slots waiting in the pool for a caller (connected, or to be reconnected on use).
        public var idle: Int
        /// Connections currently lent to callers.
        public var leased: Int
        /// Callers waiting for a free connection.
        public var waiting: Int
        /// The most connections that were open at the same time.
        public var peakOpen: Int
        /// Successful connects so far (grows when failed connections are re-created).
        public var created: Int
    }

    /// The configuration this client was created with.
    public let configuration: Configuration
    private let pool: PostgresPool

    /// Creates a client. No connection is made until the first call.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.pool = PostgresPool(
            size: configuration.poolSize,
            settings: PostgresConnectionSettings(
                url: configuration.url,
                connectTimeout: configuration.connectTimeout,
                queryTimeout: configuration.queryTimeout,
                applicationName: configuration.applicationName
            )
        )
    }

    /// Creates a client from a URL such as `postgresql://soma:secret@127.0.0.1:5432/soma`.
    /// - Throws: ``PostgresError`` with code ``PostgresError/Code/invalidURL`` when the URL cannot be parsed.
    public convenience init(
        url: String,
        poolSize: Int = 4,
        connectTimeout: Duration = .seconds(2),
        queryTimeout: Duration = .seconds(2),
        applicationName: String? = nil
    ) throws {
        self.init(
            configuration: Configuration(
                url: try PostgresURL(url),
                poolSize: poolSize,
                connectTimeout: connectTimeout,
                queryTimeout: queryTimeout,
                applicationName: applicationName
            ))
    }

    /// Runs until graceful shutdown, then closes the pool (`ConnectionPool.runUntilShutdown()`).
    public func run() async throws { await pool.runUntilShutdown() }

    /// A backstop for clients used without `run()` (scripts, tests): the pool closes with the last
    /// reference.
    deinit {
        pool.close()
    }

    /// Runs one statement on a pooled connection, e.g.
    /// `try await client.query("SELECT body FROM notes WHERE id = $1", [.integer(id)])`.
    /// - Throws: ``PostgresError`` (`.query` with the SQLSTATE for server errors; `.connect`, `.timeout`,
    ///   `.io`, `.closed`), or `CancellationError` when cancelled while waiting for a connection.
    public func query(_ sql: String, _ parameters: [PostgresValue] = []) async throws -> PostgresResult {
        try await withConnection { try $0.query(sql, parameters) }
    }

    /// Runs `body` inside `BEGIN … COMMIT` on one connection; any error thrown by `body` (or by a statement
    /// in it) rolls back and is rethrown. The body runs synchronously on the connection's thread: keep it to
    /// statements and quick computation.
    ///
    /// A `COMMIT` that the server turns into a rollback (because an earlier statement failed and the body
    /// caught its error) throws ``PostgresError/Code/query`` with SQLSTATE `25P02`.
    /// - Throws: ``PostgresError``, the body's error, or `CancellationError` while waiting for a connection.
    public func withTransaction<T: Sendable>(_ body: @Sendable (any PostgresQuerying) throws -> T) async throws -> T {
        try await withLease { session in
            _ = try session.query("BEGIN", [])
            do {
                let value = try body(session)
                let commit = try session.query("COMMIT", [])
                if commit.commandTag == "ROLLBACK" {
                    throw PostgresError(
                        .query,
                        "the transaction was rolled back at COMMIT because a statement in it had failed",
                        sqlState: "25P02"
                    )
                }
                return value
            } catch {
                // Best effort: a broken connection is closed after the body anyway, which also rolls back.
                if session.isInTransaction { _ = try? session.query("ROLLBACK", []) }
                throw error
            }
        }
    }

    /// Runs `body` with one connection to itself, outside any transaction (each statement commits on its
    /// own unless the body sends `BEGIN`), e.g. `pg_advisory_lock`, then work, then `pg_advisory_unlock`.
    /// The body runs synchronously on the connection's thread.
    /// - Throws: ``PostgresError``, the body's error, or `CancellationError` while waiting for a connection.
    public func withConnection<T: Sendable>(_ body: @Sendable (any PostgresQuerying) throws -> T) async throws -> T {
        try await withLease { session in try body(session) }
    }

    /// Runs `SELECT 1` on a pooled connection (connecting first when needed).
    /// - Throws: ``PostgresError``.
    public func ping() async throws {
        let result = try await query("SELECT 1")
        guard result.rows.first?.int64(0) == 1 else {
            throw PostgresError(.io, "unexpected answer to SELECT 1: \(result.rows.map(\.values))")
        }
    }

    /// A snapshot of the pool (for tests, metrics and debugging).
    public var poolStats: PoolStats {
        let usage = pool.usage
        let counts = pool.counters.snapshot
        return PoolStats(
            open: counts.open,
            idle: usage.idle,
            leased: usage.leased,
            waiting: usage.waiting,
            peakOpen: counts.peakOpen,
            created: counts.created
        )
    }

    /// Closes the pool: idle connections now, busy ones when their call finishes. Waiting and later calls
    /// throw ``PostgresError/Code/closed``. Calling it again does nothing.
    public func close() {
        pool.close()
    }

    private func withLease<T: Sendable>(_ body: @Sendable (PostgresSession) throws -> T) async throws -> T {
        let connection = try await pool.acquire()
        defer { pool.release(connection) }
        return try await connection.run(body)
    }
}
