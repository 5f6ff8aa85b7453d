// Over 500 lines on purpose: one libpq connection's whole life (connect with its timeouts and
// keepalives, the client-side deadline for frozen servers, reuse checks, result reading) shares one
// private state and one serial queue; split across files it would need that state made internal.
import CLibPQ
import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a connection needs to (re)connect: a copy of the client's configuration.
struct PostgresConnectionSettings: Sendable {
    var url: PostgresURL
    var connectTimeout: Duration
    var queryTimeout: Duration
    var applicationName: String?

    /// The client-side deadline of one call: the query timeout plus a second for the server's own
    /// `statement_timeout` answer to arrive.
    var callDeadline: Duration { queryTimeout + .seconds(1) }

    /// libpq connection keywords and values (`PQconnectStartParams`). The URL's query parameters come
    /// first; the keywords set here from the configuration replace theirs (`options` is appended to).
    var connectionKeywords: [(keyword: String, value: String)] {
        let timeoutMilliseconds = max(1, queryTimeout.wholeMilliseconds)
        let connectSeconds = max(1, Int((connectTimeout.wholeMilliseconds + 999) / 1000))
        var options = url.parameters["options"].map { $0 + " " } ?? ""
        // statement_timeout: the server cancels a statement that runs longer (SQLSTATE 57014).
        // bytea_output=hex: what PostgresRow.bytes(_:) expects first (it reads the escape format too).
        options += "-c statement_timeout=\(timeoutMilliseconds) -c bytea_output=hex"
        var ours: [(String, String)] = [
            ("host", url.host),
            ("port", String(url.port)),
        ]
        if let user = url.user { ours.append(("user", user)) }
        if let password = url.password { ours.append(("password", password)) }
        if let database = url.database { ours.append(("dbname", database)) }
        ours += [
            // libpq's own connect timeout (whole seconds, at least 2 in libpq); the client enforces
            // connectTimeout itself around PQconnectPoll, so this only matters when that is longer.
            ("connect_timeout", String(connectSeconds)),
            ("client_encoding", "UTF8"),
            ("options", options),
            // A peer that vanished (network partition, host down) fails the socket within seconds.
            ("keepalives", "1"),
            ("keepalives_idle", "1"),
            ("keepalives_interval", "1"),
            ("keepalives_count", "2"),
            ("tcp_user_timeout", String(timeoutMilliseconds)),
        ]
        if let name = applicationName ?? url.parameters["application_name"] {
            ours.append(("application_name", String(name.unicodeScalars.filter { $0 != "\u{0}" })))
        }
        let ourKeys = Set(ours.map(\.0) + ["application_name"])
        let theirs = url.parameters.filter { !ourKeys.contains($0.key) }.sorted { $0.key < $1.key }
        return theirs.map { ($0.key, $0.value) } + ours.map { ($0.0, $0.1) }
    }

    /// `host:port` (or the socket directory) for messages.
    var endpoint: String {
        if url.host.hasPrefix("/") { return "\(url.host)/.s.PGSQL.\(url.port)" }
        return url.host.contains(":") ? "[\(url.host)]:\(url.port)" : "\(url.host):\(url.port)"
    }
}

extension Duration {
    /// The duration in whole milliseconds (rounded down; negative durations give 0).
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}

/// The client-side deadline of blocking libpq calls: when a call has not returned in time, the socket is
/// shut down from a timer thread (`shutdown(fd, SHUT_RDWR)`), which makes the blocked call fail at once.
///
/// That is what bounds a call against a frozen server (SIGSTOP, a hung host behind a live kernel): the
/// server-side `statement_timeout` cannot fire then, and TCP keepalives are answered by the kernel.
///
/// Safety of the descriptor: `socket` is recorded under the lock by ``arm(socket:after:)`` and cleared by
/// ``disarm()``, both on the connection's queue, which calls `PQfinish` (closing the descriptor) only after
/// `disarm()`. ``fire(_:)`` shuts the socket down only under the same lock and only while the call it was
/// armed for is still in progress, so it never touches a descriptor that was closed or reused meanwhile.
final class PostgresCallWatchdog: Sendable {
    private struct State {
        var socket: Int32 = -1
        var call: UInt64 = 0
        var fired = false
    }

    /// One timer queue for all connections: firing only does a non-blocking `shutdown`.
    private static let timers = DispatchQueue(label: "soma.postgres.watchdog")
    private let state = Mutex(State())

    /// Starts the deadline for a call on `socket`.
    func arm(socket: Int32, after deadline: Duration) {
        let call: UInt64 = state.withLock { state in
            state.call &+= 1
            state.socket = socket
            state.fired = false
            return state.call
        }
        let nanoseconds = Int(clamping: deadline.wholeMilliseconds * 1_000_000)
        Self.timers.asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { [self] in
            fire(call)
        }
    }

    /// Ends the call; returns whether the deadline fired (the socket is then shut down).
    func disarm() -> Bool {
        state.withLock { state in
            state.socket = -1
            return state.fired
        }
    }

    private func fire(_ call: UInt64) {
        state.withLock { state in
            guard state.call == call, state.socket >= 0, !state.fired else { return }
            state.fired = true
            _ = shutdown(state.socket, Int32(SHUT_RDWR))
        }
    }
}

/// One pooled connection: a libpq `PGconn` (absent until first use, and after a failure) plus the serial
/// `DispatchQueue` on which every blocking libpq call for it runs.
///
/// Thread safety: the `PGconn` pointer (not `Sendable`) lives only inside `state`, a `Mutex`, and is only
/// touched inside `state.withLock` — on `queue` for I/O, or in `deinit` when nobody else can reach it.
/// So no `@unchecked Sendable` is needed. The pool additionally leases a connection to one caller at a time,
/// so the lock is never contended in practice; it is what makes the sharing provably safe.
final class PostgresConnection: PooledConnection {
    static func closedError() -> any Error { PostgresError(.closed, "the PostgreSQL client is closed") }

    struct State {
        var connection: OpaquePointer?
        /// `counters.failureEpoch` when `connection` was made.
        var epoch = 0
    }

    /// Carries a non-escaping body to the queue. The queue takes it out (``take()``) before the caller is
    /// resumed, so `withoutActuallyEscaping` sees it released in time.
    private final class BodySlot<T: Sendable>: Sendable {
        private let body: Mutex<(@Sendable (PostgresSession) throws -> T)?>

        init(_ body: @escaping @Sendable (PostgresSession) throws -> T) {
            self.body = Mutex(body)
        }

        func take() -> (@Sendable (PostgresSession) throws -> T)? {
            body.withLock { $0.take() }
        }
    }

    let id: Int
    private let settings: PostgresConnectionSettings
    private let counters: PoolCounters
    private let queue: DispatchQueue
    private let watchdog = PostgresCallWatchdog()
    private let state = Mutex(State())

    init(id: Int, settings: PostgresConnectionSettings, counters: PoolCounters) {
        self.id = id
        self.settings = settings
        self.counters = counters
        // A serial queue of our own: blocking libpq calls never run on the Swift cooperative pool or NIO loops.
        self.queue = DispatchQueue(label: "soma.postgres.connection.\(id)")
    }

    deinit {
        state.withLock { state in
            if let connection = state.connection {
                PQfinish(connection)
                state.connection = nil
                counters.didClose()
            }
        }
    }

    /// Runs `body` with a connected session on this connection's queue, connecting first when needed, and
    /// suspends the caller until it is done.
    ///
    /// Afterwards the connection is checked: one whose call failed with a connect, I/O or client-side timeout
    /// error, whose status is `CONNECTION_BAD`, or that could not be brought back out of a transaction is
    /// closed (`PQfinish`); the next use reconnects.
    func run<T: Sendable>(_ body: @Sendable (PostgresSession) throws -> T) async throws -> T {
        try await withoutActuallyEscaping(body) { escapable in
            let slot = BodySlot(escapable)
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                queue.async { [self] in
                    let result = perform(slot)
                    continuation.resume(with: result)
                }
            }
        }
    }

    /// Closes the connection (if any) on the connection's queue, after any work already queued.
    func shutdown() {
        queue.async { [self] in
            state.withLock { discard(&$0) }
        }
    }

    // MARK: - On the queue

    private func perform<T: Sendable>(_ slot: BodySlot<T>) -> Result<T, any Error> {
        guard let body = slot.take() else { return .failure(PostgresError(.closed, "internal error: the call's body is gone")) }
        return state.withLock { state -> Result<T, any Error> in
            let connection: OpaquePointer
            do {
                connection = try connected(&state)
            } catch {
                return .failure(error)
            }
            let context = PostgresCallContext(settings: settings, watchdog: watchdog, counters: counters)
            let result: Result<T, any Error>
            do {
                result = .success(try body(PostgresSession(connection: connection, context: context)))
            } catch {
                result = .failure(error)
            }
            context.isValid = false
            if !context.isBroken && !context.returnToIdle(connection) { context.isBroken = true }
            if context.isBroken { discard(&state) }
            return result
        }
    }

    private func discard(_ state: inout State) {
        if let connection = state.connection {
            PQfinish(connection)
            state.connection = nil
            counters.didClose()
        }
    }

    private func connected(_ state: inout State) throws(PostgresError) -> OpaquePointer {
        let epoch = counters.failureEpoch.load(ordering: .relaxed)
        if let connection = state.connection {
            if state.epoch >= epoch && Self.isHealthyIdle(connection) { return connection }
            discard(&state)  // broken, stale (made before a pool-wide failure) or the server hung up meanwhile
        }
        do {
            let connection = try connect()
            state.connection = connection
            state.epoch = epoch
            counters.didOpen()
            return connection
        } catch {
            counters.didFail()
            throw error
        }
    }

    /// An idle connection is healthy when libpq thinks so and the server has sent nothing since the last
    /// call: a terminated backend's FATAL message or the end of the stream (server stopped or restarted)
    /// makes the socket readable.
    private static func isHealthyIdle(_ connection: OpaquePointer) -> Bool {
        guard PQstatus(connection) == CONNECTION_OK, PQtransactionStatus(connection) == PQTRANS_IDLE else { return false }
        let socket = PQsocket(connection)
        guard socket >= 0 else { return false }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 0
    }

    /// `PQconnectStartParams` + `PQconnectPoll` under our own deadline (`connectTimeout`, to the millisecond;
    /// host name resolution in `PQconnectStartParams` is not bounded by it).
    private func connect() throws(PostgresError) -> OpaquePointer {
        let pairs = settings.connectionKeywords
        let endpoint = settings.endpoint
        let keywords = pairs.map { strdup($0.keyword) }
        let values = pairs.map { strdup($0.value) }
        defer {
            for pointer in keywords + values { free(pointer) }
        }
        let keywordArray: [UnsafePointer<CChar>?] = keywords.map { $0.map { UnsafePointer($0) } } + [nil]
        let valueArray: [UnsafePointer<CChar>?] = values.map { $0.map { UnsafePointer($0) } } + [nil]
        guard let connection = PQconnectStartParams(keywordArray, valueArray, 0) else {
            throw PostgresError(.connect, "connecting to \(endpoint): libpq could not allocate a connection")
        }
        // Notices and warnings (e.g. "there is no transaction in progress") would go to stderr: drop them.
        _ = PQsetNoticeProcessor(connection, { _, _ in }, nil)
        func fail(_ why: String) -> PostgresError {
            PQfinish(connection)
            return PostgresError(.connect, "connecting to \(endpoint): \(why)")
        }
        if PQstatus(connection) == CONNECTION_BAD { throw fail(Self.errorMessage(connection)) }

        let clock = ContinuousClock()
        let deadline = clock.now + settings.connectTimeout
        var polling = PGRES_POLLING_WRITING
        while true {
            switch polling {
            case PGRES_POLLING_OK:
                guard PQstatus(connection) == CONNECTION_OK else { throw fail(Self.errorMessage(connection)) }
                return connection
            case PGRES_POLLING_FAILED:
                throw fail(Self.errorMessage(connection))
            case PGRES_POLLING_READING, PGRES_POLLING_WRITING:
                let remaining = clock.now.duration(to: deadline)
                guard remaining > .zero else {
                    throw fail("timed out after \(settings.connectTimeout) (connectTimeout)")
                }
                let socket = PQsocket(connection)
                guard socket >= 0 else { throw fail("no socket: \(Self.errorMessage(connection))") }
                let events = polling == PGRES_POLLING_READING ? POLLIN : POLLOUT
                var descriptor = pollfd(fd: socket, events: Int16(events), revents: 0)
                let milliseconds = Int32(clamping: max(1, remaining.wholeMilliseconds))
                let ready = poll(&descriptor, 1, milliseconds)
                if ready < 0 {
                    let error = errno
                    if error == EINTR { continue }
                    throw fail("poll failed: errno \(error)")
                }
                if ready == 0 { continue }  // the deadline check above ends the loop
            default:
                // PGRES_POLLING_ACTIVE is obsolete and never returned.
                break
            }
            polling = PQconnectPoll(connection)
        }
    }

    static func errorMessage(_ connection: OpaquePointer) -> String {
        guard let text = PQerrorMessage(connection) else { return "unknown libpq error" }
        let message = String(cString: text).trimmedPostgresMessage()
        return message.isEmpty ? "unknown libpq error" : message
    }
}

/// The per-lease state of a connection, shared by the ``PostgresSession`` values handed to a body.
/// Created and used only on the connection's queue (not `Sendable`).
final class PostgresCallContext {
    let settings: PostgresConnectionSettings
    let watchdog: PostgresCallWatchdog
    let counters: PoolCounters
    /// Cleared when the body returns: a session that outlived it fails with ``PostgresError/Code/closed``.
    var isValid = true
    /// Set when a call failed in a way that leaves the connection unusable; it is closed after the body.
    var isBroken = false

    init(settings: PostgresConnectionSettings, watchdog: PostgresCallWatchdog, counters: PoolCounters) {
        self.settings = settings
        self.watchdog = watchdog
        self.counters = counters
    }

    /// Brings the connection back to "idle, no transaction" after a body (a `withConnection` body may have
    /// left a transaction open); false when that is impossible and the connection must be closed.
    func returnToIdle(_ connection: OpaquePointer) -> Bool {
        guard PQstatus(connection) == CONNECTION_OK else { return false }
        switch PQtransactionStatus(connection) {
        case PQTRANS_IDLE:
            return true
        case PQTRANS_INTRANS, PQTRANS_INERROR:
            guard (try? execute(connection, "ROLLBACK", [])) != nil else { return false }
            return !isBroken && PQtransactionStatus(connection) == PQTRANS_IDLE
        default:
            return false
        }
    }

    /// `PQexecParams` with the client-side deadline; maps the outcome to a result or a ``PostgresError``.
    func execute(_ connection: OpaquePointer, _ sql: String, _ parameters: [PostgresValue]) throws(PostgresError) -> PostgresResult {
        guard isValid else {
            throw PostgresError(.closed, "a PostgresQuerying was used after its withConnection/withTransaction body returned")
        }
        guard !isBroken else {
            throw PostgresError(.io, "the connection broke earlier in this withConnection/withTransaction body")
        }
        guard !sql.utf8.contains(0) else { throw PostgresError(.query, "the SQL text contains a NUL character") }
        guard parameters.count <= 65_535 else {
            throw PostgresError(.query, "\(parameters.count) parameters; PostgreSQL allows at most 65535")
        }

        // Each parameter in its own malloc'd buffer, freed after the call.
        var buffers: [UnsafeMutablePointer<CChar>?] = []
        buffers.reserveCapacity(parameters.count)
        defer { for buffer in buffers { free(buffer) } }
        var types = [Oid](repeating: 0, count: parameters.count)
        var lengths = [Int32](repeating: 0, count: parameters.count)
        var formats = [Int32](repeating: 0, count: parameters.count)
        for (index, value) in parameters.enumerated() {
            switch value {
            case .null:
                buffers.append(nil)
            case .text(let text):
                guard !text.utf8.contains(0) else {
                    throw PostgresError(.query, "parameter $\(index + 1) contains a NUL character, which PostgreSQL text cannot store")
                }
                buffers.append(strdup(text))
            case .integer(let number):
                buffers.append(strdup(String(number)))
            case .bool(let flag):
                buffers.append(strdup(flag ? "true" : "false"))
            case .bytes(let bytes):
                guard bytes.count <= Int(Int32.max) else {
                    throw PostgresError(.query, "parameter $\(index + 1) has \(bytes.count) bytes; at most \(Int32.max) fit")
                }
                let buffer = malloc(max(1, bytes.count))!.bindMemory(to: CChar.self, capacity: max(1, bytes.count))
                bytes.withUnsafeBytes { source in
                    if let base = source.baseAddress, !source.isEmpty {
                        UnsafeMutableRawPointer(buffer).copyMemory(from: base, byteCount: source.count)
                    }
                }
                buffers.append(buffer)
                types[index] = 17  // bytea
                lengths[index] = Int32(bytes.count)
                formats[index] = 1  // binary
            }
        }
        let values: [UnsafePointer<CChar>?] = buffers.map { $0.map { UnsafePointer($0) } }

        watchdog.arm(socket: PQsocket(connection), after: settings.callDeadline)
        let result = PQexecParams(connection, sql, Int32(parameters.count), types, values, lengths, formats, 0)
        let timedOut = watchdog.disarm()

        guard let result else {
            isBroken = true
            if timedOut { throw timeoutError(PostgresConnection.errorMessage(connection)) }
            counters.didFail()
            throw PostgresError(.io, PostgresConnection.errorMessage(connection))
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            // Completed just as the deadline fired: the answer is good, the (shut down) socket is not.
            if timedOut { isBroken = true }
            return Self.makeResult(result)
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            isBroken = true  // the connection is stuck in the COPY sub-protocol
            throw PostgresError(.query, "COPY is not supported by this client")
        default:
            let sqlState = Self.field(result, 67)  // PG_DIAG_SQLSTATE ('C')
            let message = Self.errorMessage(result, connection)
            if timedOut {
                isBroken = true
                throw timeoutError(message)
            }
            if PQstatus(connection) == CONNECTION_BAD || sqlState?.hasPrefix("08") == true {
                isBroken = true
                counters.didFail()
                throw PostgresError(.io, message, sqlState: sqlState)
            }
            if sqlState == "57014" { throw PostgresError(.timeout, message, sqlState: sqlState) }
            throw PostgresError(.query, message, sqlState: sqlState)
        }
    }

    private func timeoutError(_ detail: String) -> PostgresError {
        PostgresError(
            .timeout,
            "no answer within \(settings.callDeadline) (queryTimeout + 1 s); the connection was closed (\(detail))"
        )
    }

    private static func makeResult(_ result: OpaquePointer) -> PostgresResult {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        let columns = (0..<columnCount).map { column in
            PQfname(result, Int32(column)).map { String(cString: $0) } ?? ""
        }
        var rows: [PostgresRow] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            var values: [String?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                if PQgetisnull(result, Int32(row), Int32(column)) != 0 {
                    values.append(nil)
                } else {
                    let length = Int(PQgetlength(result, Int32(row), Int32(column)))
                    let bytes = UnsafeRawBufferPointer(start: PQgetvalue(result, Int32(row), Int32(column)), count: length)
                    values.append(String(decoding: bytes, as: UTF8.self))
                }
            }
            rows.append(PostgresRow(values: values))
        }
        let tag = PQcmdStatus(result).map { String(cString: $0) } ?? ""
        let affected = PQcmdTuples(result).flatMap { Int(String(cString: $0)) } ?? 0
        return PostgresResult(rows: rows, affectedRows: affected, columns: columns, commandTag: tag)
    }

    private static func field(_ result: OpaquePointer, _ code: Int32) -> String? {
        guard let text = PQresultErrorField(result, code) else { return nil }
        let value = String(cString: text)
        return value.isEmpty ? nil : value
    }

    /// The server's primary message with its DETAIL (and HINT), else libpq's whole message.
    private static func errorMessage(_ result: OpaquePointer, _ connection: OpaquePointer) -> String {
        if let primary = field(result, 77) {  // PG_DIAG_MESSAGE_PRIMARY ('M')
            var message = primary
            if let detail = field(result, 68) { message += " — DETAIL: \(detail)" }  // PG_DIAG_MESSAGE_DETAIL ('D')
            if let hint = field(result, 72) { message += " — HINT: \(hint)" }  // PG_DIAG_MESSAGE_HINT ('H')
            return message
        }
        if let text = PQresultErrorMessage(result) {
            let message = String(cString: text).trimmedPostgresMessage()
            if !message.isEmpty { return message }
        }
        return PostgresConnection.errorMessage(connection)
    }
}

/// The ``PostgresQuerying`` handed to a body: one leased connection, valid only inside that body.
struct PostgresSession: PostgresQuerying {
    let connection: OpaquePointer
    let context: PostgresCallContext

    /// Whether a transaction block is open (`BEGIN` sent, no `COMMIT`/`ROLLBACK` yet), failed or not.
    var isInTransaction: Bool {
        let status = PQtransactionStatus(connection)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR
    }

    func query(_ sql: String, _ parameters: [PostgresValue]) throws(PostgresError) -> PostgresResult {
        try context.execute(connection, sql, parameters)
    }
}

extension String {
    /// The string without leading and trailing spaces, tabs and line breaks (Foundation-free).
    fileprivate func trimmedPostgresMessage() -> String {
        let scalars = unicodeScalars
        let drop: Set<Unicode.Scalar> = [" ", "\n", "\t", "\r"]
        guard let first = scalars.firstIndex(where: { !drop.contains($0) }),
            let last = scalars.lastIndex(where: { !drop.contains($0) })
        else { return "" }
        return String(scalars[first...last])
    }
}
