import Foundation
import Soma
import Testing

/// Against real PostgreSQL servers (see `PostgresHarness`). Tests that pause, stop or restart a server get
/// their own; the rest share one and use distinct table names.
@Suite("PostgresClient", .requiresPostgres, .timeLimit(.minutes(2)))
struct PostgresClientTests {
    private func sharedClient(poolSize: Int = 4, queryTimeout: Duration = .seconds(2)) async throws -> PostgresClient {
        let server = try await PostgresHarness.shared()
        return try PostgresClient(url: server.url, poolSize: poolSize, queryTimeout: queryTimeout, applicationName: "soma-tests")
    }

    /// Runs `body` and returns the `PostgresError` it throws (failing the test when it throws none or another).
    private func postgresError(_ body: () async throws -> Void) async -> PostgresError? {
        do {
            try await body()
            Issue.record("expected a PostgresError, nothing was thrown")
            return nil
        } catch let error as PostgresError {
            return error
        } catch {
            Issue.record("expected a PostgresError, got \(error)")
            return nil
        }
    }

    @Test func valuesRoundTripVerbatim() async throws {
        let client = try await sharedClient()
        defer { client.close() }
        let table = PostgresHarness.tableName()
        _ = try await client.query(
            """
            CREATE TABLE \(table) (id bigint PRIMARY KEY, name text, n bigint, flag boolean, data bytea)
            """)
        let injection = "'); DROP TABLE \(table); --"
        let texts = ["héllo wörld ✓ 日本語 🚀", "it's \"quoted\" \\ back\\slash", injection, "", "$1 $2 ? %s"]
        let integers: [Int64] = [.min, .max, 0, -1, 42]
        let blobs: [[UInt8]] = [[0, 1, 2, 0, 255, 0], [], Array("\\x00".utf8), (0...255).map { UInt8($0) }, [0]]
        for index in texts.indices {
            let result = try await client.query(
                "INSERT INTO \(table) (id, name, n, flag, data) VALUES ($1, $2, $3, $4, $5)",
                [.integer(Int64(index)), .text(texts[index]), .integer(integers[index]), .bool(index % 2 == 0), .bytes(blobs[index])]
            )
            #expect(result.affectedRows == 1)
            #expect(result.commandTag == "INSERT 0 1")
        }
        _ = try await client.query("INSERT INTO \(table) (id) VALUES ($1)", [.integer(100)])
        _ = try await client.query(
            "INSERT INTO \(table) (id, name, n, flag, data) VALUES ($1, $2, $3, $4, $5)",
            [.integer(101), .null, .null, .null, .null]
        )

        let result = try await client.query("SELECT id, name, n, flag, data FROM \(table) ORDER BY id")
        #expect(result.columns == ["id", "name", "n", "flag", "data"])
        #expect(result.rows.count == texts.count + 2)
        #expect(result.affectedRows == texts.count + 2)
        for index in texts.indices {
            let row = result.rows[index]
            #expect(row.int64(0) == Int64(index))
            #expect(row.string(1) == texts[index])
            #expect(row.int64(2) == integers[index])
            #expect(row.bool(3) == (index % 2 == 0))
            #expect(row.bytes(4) == blobs[index])
            #expect(!row.isNull(1))
        }
        for row in result.rows.suffix(2) {
            for column in 1...4 {
                #expect(row.isNull(column))
                #expect(row.string(column) == nil)
            }
            #expect(row.bytes(4) == nil && row.int64(2) == nil && row.bool(3) == nil)
        }
        #expect(result.rows[0].isNull(99))  // out of range reads as NULL

        // The injection string was data: the table is still there, and a lookup by it finds one row.
        let found = try await client.query("SELECT id FROM \(table) WHERE name = $1", [.text(injection)])
        #expect(found.rows.map { $0.int64(0) } == [2])
        // Byte-exact equality on the server side too (binary bytea parameter).
        let byBytes = try await client.query("SELECT id FROM \(table) WHERE data = $1", [.bytes([0, 1, 2, 0, 255, 0])])
        #expect(byBytes.rows.map { $0.int64(0) } == [0])
        let lengths = try await client.query("SELECT octet_length(data) FROM \(table) WHERE id = 3")
        #expect(lengths.rows.first?.int64(0) == 256)

        let updated = try await client.query("UPDATE \(table) SET flag = NOT flag WHERE id < $1", [.integer(3)])
        #expect(updated.affectedRows == 3)
        #expect(updated.commandTag == "UPDATE 3")
        _ = try await client.query("DROP TABLE \(table)")
    }

    @Test func parametersAreUntypedTextExceptBytes() async throws {
        let client = try await sharedClient()
        defer { client.close() }
        // The server infers types from context; casts say it where the context does not.
        let result = try await client.query(
            "SELECT $1::bigint + 1, $2::text, $3::boolean, $4::bytea, $5::text IS NULL, $6::double precision",
            [.integer(Int64.max - 1), "tëxt", true, .bytes([0xDE, 0xAD, 0]), .null, .text("2.5")]
        )
        let row = try #require(result.rows.first)
        #expect(row.int64(0) == Int64.max)
        #expect(row.string(1) == "tëxt")
        #expect(row.bool(2) == true)
        #expect(row.bytes(3) == [0xDE, 0xAD, 0])
        #expect(row.bool(4) == true)
        #expect(row.double(5) == 2.5)
        #expect(result.rows.count == 1 && result.columns.count == 6)

        // Untyped parameters take the type their context gives them (repeat(text, integer)).
        let repeated = try await client.query("SELECT repeat($1, $2)", ["ab", .integer(3)])
        #expect(repeated.rows.first?.string(0) == "ababab")

        // bytea in the escape output format decodes too.
        let escaped = try await client.withConnection { db in
            _ = try db.query("SET bytea_output = escape", [])
            defer { _ = try? db.query("SET bytea_output = hex", []) }
            return try db.query("SELECT $1::bytea", [.bytes([0, 92, 65, 200])]).rows.first?.bytes(0)
        }
        #expect(escaped == [0, 92, 65, 200])

        // A NUL in text is refused before anything is sent; so are two statements in one call.
        let nul = await postgresError { _ = try await client.query("SELECT $1::text", [.text("a\u{0}b")]) }
        #expect(nul?.code == .query)
        let twoStatements = await postgresError { _ = try await client.query("SELECT 1; SELECT 2") }
        #expect(twoStatements?.code == .query)
        #expect(twoStatements?.sqlState == "42601")
        let syntax = await postgresError { _ = try await client.query("SELEKT 1") }
        #expect(syntax?.code == .query && syntax?.sqlState == "42601")
        try await client.ping()  // errors leave the connection usable
        #expect(client.poolStats.open == 1)
    }

    @Test func uniqueViolationCarriesSQLState() async throws {
        let client = try await sharedClient()
        defer { client.close() }
        let table = PostgresHarness.tableName()
        _ = try await client.query("CREATE TABLE \(table) (key text PRIMARY KEY)")
        _ = try await client.query("INSERT INTO \(table) VALUES ($1)", ["k"])
        let error = await postgresError { _ = try await client.query("INSERT INTO \(table) VALUES ($1)", ["k"]) }
        #expect(error?.code == .query)
        #expect(error?.sqlState == "23505")
        #expect(error?.isUniqueViolation == true)
        #expect(error?.message.contains("already exists") == true, "\(String(describing: error))")
        _ = try await client.query("DROP TABLE \(table)")
    }

    @Test func transactionsCommitAndRollBack() async throws {
        struct Abort: Error {}
        let client = try await sharedClient()
        defer { client.close() }
        let table = PostgresHarness.tableName()
        _ = try await client.query("CREATE TABLE \(table) (id bigint PRIMARY KEY, v text)")

        let committed = try await client.withTransaction { db in
            _ = try db.query("INSERT INTO \(table) VALUES ($1, $2)", [1, "one"])
            _ = try db.query("INSERT INTO \(table) VALUES ($1, $2)", [2, "two"])
            return try db.query("SELECT count(*) FROM \(table)", []).rows.first?.int64(0)
        }
        #expect(committed == 2)

        await #expect(throws: Abort.self) {
            try await client.withTransaction { db in
                _ = try db.query("INSERT INTO \(table) VALUES ($1, $2)", [3, "three"])
                _ = try db.query("UPDATE \(table) SET v = $1 WHERE id = $2", ["changed", 1])
                throw Abort()
            }
        }
        // A failing statement rolls back the statements before it.
        let duplicate = await postgresError {
            try await client.withTransaction { db in
                _ = try db.query("INSERT INTO \(table) VALUES ($1, $2)", [4, "four"])
                _ = try db.query("INSERT INTO \(table) VALUES ($1, $2)", [1, "duplicate"])
            }
        }
        #expect(duplicate?.sqlState == "23505")
        // A body that swallows a statement's error cannot commit.
        let swallowed = await postgresError {
            try await client.withTransaction { db in
                _ = try db.query("INSERT INTO \(table) VALUES ($1, $2)", [5, "five"])
                _ = try? db.query("INSERT INTO \(table) VALUES ($1, $2)", [1, "duplicate"])
            }
        }
        #expect(swallowed?.sqlState == "25P02")

        let rows = try await client.query("SELECT id, v FROM \(table) ORDER BY id")
        #expect(rows.rows.map { $0.int64(0) } == [1, 2])
        #expect(rows.rows.map { $0.string(1) } == ["one", "two"])

        // withConnection: no transaction; a left-open one is rolled back when the body returns.
        try await client.withConnection { db in
            _ = try db.query("BEGIN", [])
            _ = try db.query("INSERT INTO \(table) VALUES ($1, $2)", [6, "six"])
        }
        #expect(try await client.query("SELECT count(*) FROM \(table)").rows.first?.int64(0) == 2)
        #expect(client.poolStats.open >= 1)
        _ = try await client.query("DROP TABLE \(table)")
    }

    @Test func advisoryLockHeldAcrossOneConnection() async throws {
        let client = try await sharedClient(poolSize: 2)
        defer { client.close() }
        let key = Int64.random(in: 1...Int64.max)
        // Lock, work, unlock on one connection while another connection finds the lock taken.
        let holder = Task {
            try await client.withConnection { db in
                let held = try db.query("SELECT pg_try_advisory_lock($1)", [.integer(key)]).rows.first?.bool(0)
                _ = try db.query("SELECT pg_sleep(0.4)", [])
                _ = try db.query("SELECT pg_advisory_unlock($1)", [.integer(key)])
                return held
            }
        }
        try await Task.sleep(for: .milliseconds(150))
        let whileHeld = try await client.query("SELECT pg_try_advisory_lock($1)", [.integer(key)]).rows.first?.bool(0)
        #expect(whileHeld == false)
        #expect(try await holder.value == true)
        let afterwards = try await client.query(
            "SELECT pg_try_advisory_lock($1) AND pg_advisory_unlock($1)", [.integer(key)]
        ).rows.first?.bool(0)
        #expect(afterwards == true)

        let settings = try await client.query("SELECT current_setting('application_name'), current_setting('statement_timeout')")
        #expect(settings.rows.first?.string(0) == "soma-tests")
        #expect(settings.rows.first?.string(1) == "2s")
    }

    @Test func statementTimeoutIsATimeout() async throws {
        let client = try await sharedClient(queryTimeout: .milliseconds(300))
        defer { client.close() }
        try await client.ping()
        let started = ContinuousClock.now
        let error = await postgresError { _ = try await client.query("SELECT pg_sleep(5)") }
        let elapsed = ContinuousClock.now - started
        #expect(error?.code == .timeout)
        #expect(error?.sqlState == "57014")
        #expect(elapsed < .seconds(2), "took \(elapsed)")
        // The server cancelled the statement cleanly: the same connection goes on.
        try await client.ping()
        #expect(client.poolStats.created == 1)
    }

    @Test func fortyConcurrentQueriesOnFourConnections() async throws {
        let client = try await sharedClient(poolSize: 4)
        defer { client.close() }
        let results = try await withThrowingTaskGroup(of: Int64?.self) { group in
            for index in 0..<40 {
                group.addTask {
                    try await client.query("SELECT $1::bigint, pg_sleep(0.02)", [.integer(Int64(index))]).rows.first?.int64(0)
                }
            }
            var values: [Int64] = []
            for try await value in group { if let value { values.append(value) } }
            return values
        }
        #expect(results.sorted() == (0..<40).map(Int64.init))
        let stats = client.poolStats
        #expect(stats.open <= 4 && stats.peakOpen <= 4 && stats.peakOpen >= 2, "\(stats)")
        #expect(stats.leased == 0 && stats.waiting == 0)
        #expect(stats.idle == stats.open)
    }

    @Test func cancelledWaiterStopsWaiting() async throws {
        let client = try await sharedClient(poolSize: 1)
        defer { client.close() }
        let busy = Task { try await client.query("SELECT pg_sleep(0.8)") }
        try await Task.sleep(for: .milliseconds(150))
        let waiter = Task { try await client.query("SELECT 1") }
        try await Task.sleep(for: .milliseconds(100))
        #expect(client.poolStats.waiting == 1)
        let started = ContinuousClock.now
        waiter.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiter.value }
        #expect(ContinuousClock.now - started < .milliseconds(400))
        _ = try await busy.value
        try await client.ping()
    }

    @Test func closedClientRefusesCalls() async throws {
        let client = try await sharedClient()
        try await client.ping()
        client.close()
        let error = await postgresError { try await client.ping() }
        #expect(error?.code == .closed)
    }

    @Test func connectFailuresAreConnectErrors() async throws {
        // Nothing listens on port 1; an unknown database is refused by a live server.
        let refused = try PostgresClient(url: "postgresql://soma@127.0.0.1:1/soma", connectTimeout: .milliseconds(500))
        defer { refused.close() }
        let error = await postgresError { try await refused.ping() }
        #expect(error?.code == .connect)
        let server = try await PostgresHarness.shared()
        let unknown = try PostgresClient(url: "postgresql://soma@127.0.0.1:\(server.port)/no_such_database")
        defer { unknown.close() }
        let missing = await postgresError { try await unknown.ping() }
        #expect(missing?.code == .connect)
        #expect(missing?.message.contains("no_such_database") == true, "\(String(describing: missing))")
        #expect(unknown.poolStats.open == 0)
    }

    @Test func serverStopThenRestartRecovers() async throws {
        let server = try await PostgresHarness.start()
        defer { Task { await server.shutdown() } }
        let client = try PostgresClient(url: server.url, poolSize: 2, connectTimeout: .seconds(1))
        defer { client.close() }
        let table = PostgresHarness.tableName()
        _ = try await client.query("CREATE TABLE \(table) (v text)")
        _ = try await client.query("INSERT INTO \(table) VALUES ($1)", ["kept"])
        // Two open connections, so that stale idle ones are exercised.
        _ = try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<2 { group.addTask { _ = try await client.query("SELECT pg_sleep(0.05)") } }
            try await group.waitForAll()
        }
        #expect(client.poolStats.open == 2)

        try await server.stop()
        let started = ContinuousClock.now
        let error = await postgresError { try await client.ping() }
        #expect(error?.code == .connect || error?.code == .io, "\(String(describing: error))")
        #expect(ContinuousClock.now - started < .seconds(3))
        #expect(client.poolStats.open <= 1)  // the other idle connection is closed when next used

        try await server.restart()
        // The next call succeeds on a fresh connection, and the data survived the restart.
        let rows = try await client.query("SELECT v FROM \(table)")
        #expect(rows.rows.map { $0.string(0) } == ["kept"])
        for _ in 0..<4 { try await client.ping() }
        #expect(client.poolStats.open >= 1)
    }

    @Test func pausedServerTimesOutThenRecovers() async throws {
        let server = try await PostgresHarness.start()
        defer { Task { await server.shutdown() } }
        let client = try PostgresClient(
            url: server.url, poolSize: 2, connectTimeout: .milliseconds(800), queryTimeout: .milliseconds(500)
        )
        defer { client.close() }
        try await client.ping()
        let createdBefore = client.poolStats.created

        try server.pause()
        var resumed = false
        defer { if !resumed { try? server.resume() } }
        let started = ContinuousClock.now
        let error = await postgresError { try await client.ping() }
        let elapsed = ContinuousClock.now - started
        #expect(error?.code == .timeout, "\(String(describing: error))")
        #expect(error?.sqlState == nil)
        #expect(elapsed >= .milliseconds(1400) && elapsed < .seconds(4), "took \(elapsed)")
        #expect(client.poolStats.open == 0)  // the timed-out connection was closed

        // A new connection cannot be made while frozen either: bounded by connectTimeout.
        let connectStarted = ContinuousClock.now
        let connectError = await postgresError { try await client.ping() }
        #expect(connectError?.code == .connect, "\(String(describing: connectError))")
        #expect(ContinuousClock.now - connectStarted < .seconds(3))

        try server.resume()
        resumed = true
        try await client.ping()
        #expect(client.poolStats.created > createdBefore)
    }
}

/// `PostgresURL` parsing (no server needed).
@Suite("PostgresClient URL")
struct PostgresClientURLTests {
    @Test func parsesFullURLs() throws {
        let url = try PostgresURL("postgresql://soma:s%40cret%2Fx@db.example.com:6543/my%20db?sslmode=disable&application_name=a%20b")
        #expect(url.host == "db.example.com")
        #expect(url.port == 6543)
        #expect(url.user == "soma")
        #expect(url.password == "s@cret/x")
        #expect(url.database == "my db")
        #expect(url.parameters == ["sslmode": "disable", "application_name": "a b"])
        #expect(!url.description.contains("s@cret") && !url.description.contains("cret"))
        #expect(url.description == "postgresql://soma:***@db.example.com:6543/my%20db?application_name=a%20b&sslmode=disable")
        #expect(try PostgresURL(url.description.replacing("***", with: "s%40cret%2Fx")) == url)
    }

    @Test func defaultsAndVariants() throws {
        let minimal = try PostgresURL("postgres://127.0.0.1")
        #expect(minimal == PostgresURL(host: "127.0.0.1"))
        #expect(minimal.port == 5432 && minimal.user == nil && minimal.password == nil && minimal.database == nil)
        #expect(try PostgresURL("  POSTGRESQL://soma@localhost/soma  ") == PostgresURL(host: "localhost", user: "soma", database: "soma"))
        #expect(try PostgresURL("postgresql://u@[::1]:5433/d") == PostgresURL(host: "::1", port: 5433, user: "u", database: "d"))
        #expect(try PostgresURL("postgresql://u:p@ss@h/d").password == "p@ss")  // the last '@' ends the user info
        #expect(try PostgresURL("postgresql://u:p/w@h/d").password == "p/w")
        #expect(try PostgresURL("postgresql://%2Ftmp%2Fpg/d").host == "/tmp/pg")
        #expect(try PostgresURL("postgresql://h/").database == nil)
        let secret = try PostgresURL("postgresql://u@h/d?password=hunter2")
        #expect(secret.parameters["password"] == "hunter2")
        #expect(!secret.description.contains("hunter2"))
    }

    @Test func rejectsInvalidURLs() {
        let invalid = [
            "", "127.0.0.1:5432", "mysql://h/d", "postgresql://", "postgresql://h:0/d", "postgresql://h:65536/d",
            "postgresql://h:port/d", "postgresql://h/d#frag", "postgresql://:secret@h/d", "postgresql://h a/d",
            "postgresql://h1,h2/d", "postgresql://[::1/d", "postgresql://u:%zz@h/d", "postgresql://h/d?novalue",
            "postgresql://h/d?Bad=1", "postgresql://h/d?a=1&a=2",
        ]
        for text in invalid {
            do {
                let url = try PostgresURL(text)
                Issue.record("parsed \(text) as \(url)")
            } catch {
                #expect(error.code == .invalidURL, "\(text)")
            }
        }
        // The password never appears in the error message.
        do {
            _ = try PostgresURL("postgresql://u:topsecret@h:99999/d")
            Issue.record("parsed an invalid port")
        } catch {
            #expect(!error.message.contains("topsecret"))
            #expect(error.description.hasPrefix("postgres invalidURL:"))
        }
        #expect(throws: PostgresError.self) { try PostgresClient(url: "redis://h") }
    }
}
