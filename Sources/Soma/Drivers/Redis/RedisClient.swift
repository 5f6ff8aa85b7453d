public import ServiceLifecycle

/// A small Redis client over hiredis (synchronous API, RESP2) with a lazily filled connection pool.
///
/// Every blocking hiredis call runs on a serial `DispatchQueue` owned by its connection — never on the
/// Swift cooperative pool or a NIO event loop; callers suspend until the call completes.
///
/// Failure handling:
/// - Error *replies* (`ERR …`, `WRONGTYPE …`) come back as ``RedisReply/error(_:)``; only the client's own
///   failures throw ``RedisError`` (except ``ping()``, which throws ``RedisError/Code/server`` on an error reply).
/// - A connection whose call failed with a connect, I/O, timeout or protocol error is closed (`redisFree`)
///   and re-created on its next use. After a connect or I/O failure (server gone or restarted) the idle
///   connections are re-created too, so a restarted server costs at most one failed call per caller in flight.
/// - Nothing is retried automatically (a command may have run before its connection broke), except the
///   `NOSCRIPT` reload of ``evalScript(_:keys:args:)``.
/// - The command timeout applies to each socket read and write (`SO_RCVTIMEO`/`SO_SNDTIMEO`), not to a
///   whole pipeline. A task cancelled while its call is on the wire still waits for that call (bounded by
///   the timeout); a task cancelled while waiting for a free connection stops waiting at once.
public final class RedisClient: Service, Sendable {
    /// How to connect and how many connections to keep.
    public struct Configuration: Sendable {
        /// Server, credentials and database.
        public var url: RedisURL
        /// Maximum number of connections (at least 1).
        public var poolSize: Int
        /// Timeout for establishing the TCP connection (host name resolution is not bounded by it).
        public var connectTimeout: Duration
        /// Timeout for each socket read/write of a command (at least 1 ms).
        public var commandTimeout: Duration
        /// When set, every connection runs `CLIENT SETNAME` with it (visible in `CLIENT LIST`); no spaces allowed.
        public var clientName: String?

        /// Creates a configuration; the defaults are 4 connections and 250 ms timeouts.
        public init(
            url: RedisURL,
            poolSize: Int = 4,
            connectTimeout: Duration = .milliseconds(250),
            commandTimeout: Duration = .milliseconds(250),
            clientName: String? = nil
        ) {
            self.url = url
            self.poolSize = poolSize
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.clientName = clientName
        }
    }

    /// A snapshot of the pool.
    public struct PoolStats: Sendable, Hashable {
        /// Connections with an open socket right now (never more than the pool size).
        public var openConnections: Int
        /// The most connections that were open at the same time.
        public var peakOpenConnections: Int
        /// Successful connects so far (grows when failed connections are re-created).
        public var connectionsCreated: Int
        /// Connections currently lent to callers.
        public var leased: Int
        /// Callers waiting for a free connection.
        public var waiting: Int
    }

    /// The configuration this client was created with.
    public let configuration: Configuration
    private let pool: RedisPool

    /// Creates a client. No connection is made until the first call.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.pool = RedisPool(
            size: configuration.poolSize,
            settings: RedisConnectionSettings(
                url: configuration.url,
                connectTimeout: configuration.connectTimeout,
                commandTimeout: configuration.commandTimeout,
                clientName: configuration.clientName
            )
        )
    }

    /// Creates a client from a URL such as `redis://:secret@127.0.0.1:6379/2`.
    /// - Throws: ``RedisError`` with code ``RedisError/Code/invalidURL`` when the URL cannot be parsed.
    public convenience init(
        url: String,
        poolSize: Int = 4,
        connectTimeout: Duration = .milliseconds(250),
        commandTimeout: Duration = .milliseconds(250),
        clientName: String? = nil
    ) throws {
        self.init(
            configuration: Configuration(
                url: try RedisURL(url),
                poolSize: poolSize,
                connectTimeout: connectTimeout,
                commandTimeout: commandTimeout,
                clientName: clientName
            ))
    }

    /// Runs until graceful shutdown, then closes the pool (`ConnectionPool.runUntilShutdown()`).
    public func run() async throws { await pool.runUntilShutdown() }

    /// A backstop for clients used without `run()` (scripts, tests): the pool closes with the last
    /// reference.
    deinit {
        pool.close()
    }

    /// Sends one command and returns its reply, e.g. `try await client.command(["SET", "k", .bytes(data), "PX", "1000"])`.
    ///
    /// An error reply is returned as ``RedisReply/error(_:)``, not thrown.
    /// - Throws: ``RedisError`` (`.connect`, `.timeout`, `.io`, `.protocol`, `.closed`; `.protocol` for an empty command).
    public func command(_ args: [RedisValue]) async throws -> RedisReply {
        guard !args.isEmpty else { throw RedisError(.protocol, "empty command") }
        return try await withConnection { try $0.command(args) }
    }

    /// Sends several commands in one round trip (all appended, then one reply read per command) and
    /// returns their replies in order. Error replies are returned in place; the commands are not a transaction.
    /// - Throws: ``RedisError``; after an I/O failure it is unknown which commands ran.
    public func pipeline(_ commands: [[RedisValue]]) async throws -> [RedisReply] {
        guard !commands.isEmpty else { return [] }
        guard commands.allSatisfy({ !$0.isEmpty }) else { throw RedisError(.protocol, "empty command in pipeline") }
        return try await withConnection { connection in
            for command in commands { try connection.append(command) }
            var replies: [RedisReply] = []
            replies.reserveCapacity(commands.count)
            for _ in commands { replies.append(try connection.readReply()) }
            return replies
        }
    }

    /// Runs a Lua script with `EVALSHA`; on a `NOSCRIPT` reply it sends `SCRIPT LOAD` and retries once
    /// (both in one round trip, on the same connection).
    ///
    /// Returns the script's reply, including `.error` replies (a Lua runtime error, or the `SCRIPT LOAD`
    /// error when the script does not compile).
    /// - Throws: ``RedisError`` for client failures.
    public func evalScript(_ script: RedisScript, keys: [RedisValue], args: [RedisValue]) async throws -> RedisReply {
        let evalsha: [RedisValue] = ["EVALSHA", .string(script.sha1), .integer(keys.count)] + keys + args
        return try await withConnection { connection in
            let first = try connection.command(evalsha)
            guard case .error(let message) = first, message.hasPrefix("NOSCRIPT") else { return first }
            try connection.append(["SCRIPT", "LOAD", .string(script.source)])
            try connection.append(evalsha)
            let loaded = try connection.readReply()
            let retried = try connection.readReply()
            if case .error = loaded { return loaded }
            return retried
        }
    }

    /// Sends `PING`.
    /// - Throws: ``RedisError``; ``RedisError/Code/server`` when the server answers with an error
    ///   (e.g. `NOAUTH`), ``RedisError/Code/protocol`` for any answer other than `PONG`.
    public func ping() async throws {
        let reply = try await command(["PING"])
        switch reply {
        case .status("PONG"):
            return
        case .error(let message):
            throw RedisError(.server, "PING failed: \(message)")
        default:
            throw RedisError(.protocol, "unexpected PING reply \(reply)")
        }
    }

    /// Closes the pool: idle connections now, busy ones when their call finishes. Waiting and later calls
    /// throw ``RedisError/Code/closed``. Calling it again does nothing.
    public func close() {
        pool.close()
    }

    /// A snapshot of the pool (for tests, metrics and debugging).
    public var poolStats: PoolStats {
        let usage = pool.usage
        let counts = pool.counters.snapshot
        return PoolStats(
            openConnections: counts.open,
            peakOpenConnections: counts.peakOpen,
            connectionsCreated: counts.created,
            leased: usage.leased,
            waiting: usage.waiting
        )
    }

    private func withConnection<T: Sendable>(_ body: @escaping @Sendable (HiredisContext) throws -> T) async throws -> T {
        let connection = try await pool.acquire()
        defer { pool.release(connection) }
        return try await connection.run(body)
    }
}
