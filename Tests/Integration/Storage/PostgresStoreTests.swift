import Foundation
import Soma
import Testing

/// What only the PostgreSQL store shows: migrations across processes, races between instances, the
/// schema, bytes that JSONB would rewrite, and its failure modes. The shared behaviour is in
/// `StoreConformanceTests`.
@Suite(.requiresPostgres, .timeLimit(.minutes(2)))
struct PostgresStoreTests {
    typealias S = StoreSamples

    /// Runs `body` with a store on a fresh database, migrated unless told otherwise.
    func withStore(migrated: Bool = true, _ body: (PostgresStore, PostgresTestDatabase) async throws -> Void) async throws {
        try await PostgresTestDatabase.with { database async throws in
            let store = PostgresStore(client: database.client)
            if migrated { try await store.migrate() }
            try await body(store, database)
        }
    }

    /// The single integer a query answers.
    func scalar(_ client: PostgresClient, _ sql: String, _ parameters: [PostgresValue] = []) async throws -> Int64 {
        try #require(try await client.query(sql, parameters).rows.first?.int64(0), "\(sql)")
    }

    // MARK: - Migrations

    @Test func migratesAnEmptyDatabaseAndRecordsEachVersionOnce() async throws {
        try await withStore(migrated: false) { store, database async throws in
            #expect(try await store.appliedMigrations() == [])
            try await store.migrate()
            #expect(try await store.appliedMigrations() == [1, 2, 3])
            try await store.migrate()
            try await store.migrate()
            #expect(try await store.appliedMigrations() == [1, 2, 3])
            #expect(try await scalar(database.client, "SELECT count(*) FROM schema_migrations WHERE applied_at <= now()") == 3)

            // The schema as documented: ids compare bytewise, times are unix ms, analysis has its JSONB.
            let columns = try await database.client.query(
                """
                SELECT table_name, column_name, data_type, coalesce(collation_name, ''), is_generated FROM information_schema.columns
                WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position
                """
            ).rows.map { row in (1...4).reduce(row.string(0) ?? "?") { $0 + "|" + (row.string($1) ?? "?") } }
            for expected in [
                "entries|id|text|C|NEVER", "entries|user_id|text|C|NEVER", "entries|created_at|bigint||NEVER",
                "entries|analysis_raw|text||NEVER", "entries|analysis|jsonb||ALWAYS",
                "profiles|snapshot|jsonb||ALWAYS", "profiles|updated_at|bigint||NEVER",
                "users|created_at|timestamp with time zone||NEVER", "idempotency_keys|created_at|bigint||NEVER",
                "schema_migrations|version|integer||NEVER",
            ] {
                #expect(columns.contains(expected), "\(expected) in \(columns)")
            }
            let index = try await database.client.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'entries_user_created'")
            #expect(index.rows.first?.string(0)?.contains("(user_id, created_at DESC, id DESC)") == true)
        }
    }

    @Test func concurrentMigrationsFromIndependentClientsApplyEachVersionOnce() async throws {
        for _ in 0..<3 {
            try await PostgresTestDatabase.with { database async throws in
                // Independent clients (separate pools and sessions), as separate processes would have.
                let clients = try (0..<6).map { _ in try database.makeClient(poolSize: 1) }
                defer { for client in clients { client.close() } }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for client in clients {
                        group.addTask { try await PostgresStore(client: client).migrate() }
                    }
                    try await group.waitForAll()
                }
                let store = PostgresStore(client: database.client)
                #expect(try await store.appliedMigrations() == [1, 2, 3])
                #expect(try await scalar(database.client, "SELECT count(*) FROM schema_migrations") == 3)
                let entry = S.entry(user: "alice")
                #expect(try await store.insertEntry(entry, idempotencyKey: "k") == .inserted(entry))
            }
        }
    }

    @Test func concurrentSomaMigrateProcessesApplyEachVersionOnce() async throws {
        let binary = try SomaProcess.binary().path
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("soma-migrate-it-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        func run(_ arguments: [String], _ name: String, databaseURL: String? = nil) async throws -> (status: Int32, log: String) {
            var environment = ProcessInfo.processInfo.environment
            environment.removeValue(forKey: "SOMA_SLOWDOWN")
            environment["DATABASE_URL"] = databaseURL
            let log = scratch.appendingPathComponent("\(name).log").path
            let status = try await Spawn.run(
                argv: [binary] + arguments, environment: environment.map { "\($0.key)=\($0.value)" },
                stdout: log, stderr: log + ".err"
            )
            let text = [log, log + ".err"].compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.joined(separator: "\n")
            return (status, text)
        }
        // ArgumentParser answers `--help` after an unknown subcommand with the root help (exit 0), so look for its usage line.
        let help = try await run(["migrate", "--help"], "help")
        guard help.status == 0, help.log.contains("soma migrate") else {
            try Test.cancel("this build has no `soma migrate` command")
        }
        try await PostgresTestDatabase.with { database async throws in
            let results = try await withThrowingTaskGroup(of: (status: Int32, log: String).self) { group in
                for i in 0..<3 {
                    group.addTask { try await run(["migrate"], "migrate-\(i)", databaseURL: database.url) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for result in results { #expect(result.status == 0, "\(result.log)") }
            #expect(try await PostgresStore(client: database.client).appliedMigrations() == [1, 2, 3])
            #expect(try await scalar(database.client, "SELECT count(*) FROM schema_migrations") == 3)
        }
    }

    // MARK: - Pagination, strings, bytes

    @Test func paginates250EntriesInThreePagesOf100ExactlyAsSQLite() async throws {
        try await withStore { store, _ async throws in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("soma-pg-it-\(UUID().uuidString)", isDirectory: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let sqlite = try SQLiteStore(path: directory.appendingPathComponent("soma.sqlite").path)
            defer { sqlite.close() }
            try await sqlite.migrate()

            // Groups of three share a millisecond; ids are not in insertion order; bob's rows interleave.
            let all = (0..<250).map { i in
                S.entry(user: "alice", id: "e-\((i * 97) % 250)", text: "entry \(i)", milliseconds: S.baseMilliseconds + Int64(i / 3))
            }
            for (i, entry) in all.enumerated() {
                _ = try await store.insertEntry(entry, idempotencyKey: i % 5 == 0 ? "key-\(i)" : nil)
                _ = try await sqlite.insertEntry(entry, idempotencyKey: i % 5 == 0 ? "key-\(i)" : nil)
                if i % 50 == 0 { _ = try await store.insertEntry(S.entry(user: "bob", milliseconds: entry.createdAtMilliseconds), idempotencyKey: nil) }
            }
            let expected = all.sorted {
                $0.createdAtMilliseconds != $1.createdAtMilliseconds
                    ? $0.createdAtMilliseconds > $1.createdAtMilliseconds
                    : $1.id.utf8.lexicographicallyPrecedes($0.id.utf8)
            }

            let pages = try await S.allPages(store, user: "alice", limit: 100)
            #expect(pages.map(\.entries.count) == [100, 100, 50])
            #expect(pages.map { $0.nextCursor != nil } == [true, true, false])
            let ids = pages.flatMap(\.entries).map(\.id)
            #expect(Set(ids).count == 250, "no duplicates")
            #expect(pages.flatMap(\.entries) == expected, "exact order")
            #expect(try await S.allPages(sqlite, user: "alice", limit: 100) == pages, "the same pages and cursors as SQLite")
            #expect(try await store.recentEntries(user: "alice", limit: 250) == expected)
        }
    }

    @Test func injectionStringsAreStoredAndReturnedVerbatim() async throws {
        try await withStore { store, database async throws in
            let hostile =
                S.oddStrings + [
                    "x'); DELETE FROM entries; --", "$1", "$$; DROP SCHEMA public CASCADE; $$", "\\x00", "E'\\\\'", "1; SELECT pg_sleep(10)",
                ]
            var stored: [Entry] = []
            for (i, odd) in hostile.enumerated() {
                let entry = S.entry(user: odd, id: "\(odd)#\(i)", text: odd, milliseconds: S.baseMilliseconds + Int64(i), modelVersion: odd)
                #expect(try await store.insertEntry(entry, idempotencyKey: odd) == .inserted(entry), "\(odd.debugDescription)")
                #expect(try await store.insertEntry(S.entry(user: odd), idempotencyKey: odd) == .existing(entry), "the key \(odd.debugDescription)")
                stored.append(entry)
            }
            for entry in stored {
                let got = try #require(try await store.entry(user: entry.userID, id: entry.id))
                #expect(Array(got.userID.utf8) == Array(entry.userID.utf8) && Array(got.text.utf8) == Array(entry.text.utf8))
                #expect(Array(got.id.utf8) == Array(entry.id.utf8) && Array(got.modelVersion.utf8) == Array(entry.modelVersion.utf8))
                // The id travels inside the cursor too.
                let page = try await store.entries(
                    user: entry.userID, limit: 1, cursor: EntryCursor(createdAtMilliseconds: entry.createdAtMilliseconds + 1, id: entry.id).encoded)
                #expect(page.entries == [entry])
            }
            #expect(try await scalar(database.client, "SELECT count(*) FROM entries") == Int64(hostile.count * 1), "nothing else was written or deleted")
            #expect(try await scalar(database.client, "SELECT count(*) FROM idempotency_keys") == Int64(hostile.count))
            #expect(
                try await scalar(
                    database.client,
                    "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename IN ('entries', 'users', 'idempotency_keys', 'profiles', 'schema_migrations')"
                ) == 5)
            #expect(try await store.deleteUser("' OR '1'='1") == UserErasure(entries: 1, profiles: 0, idempotencyKeys: 1, user: true))
            #expect(try await scalar(database.client, "SELECT count(*) FROM entries") == Int64(hostile.count - 1))
        }
    }

    @Test func unicodeIsKeptByteForByteAndOrderedBytewise() async throws {
        try await withStore { store, _ async throws in
            // NFC and NFD spellings of "é" are equal Swift strings but different users and ids here.
            let nfc = "caf\u{E9}"
            let nfd = "cafe\u{301}"
            let ids = ["a", "Z", "~", nfc, nfd, "日本", "🧠", "\u{FF41}", "a\u{200D}b", "\u{202E}x"]
            for (i, id) in ids.enumerated() {
                for user in [nfc, nfd] {
                    _ = try await store.insertEntry(
                        S.entry(user: user, id: "\(user)/\(id)", text: "\(id) \(i) 🌊", milliseconds: S.baseMilliseconds), idempotencyKey: id)
                }
            }
            for user in [nfc, nfd] {
                let got = try await store.entries(user: user, limit: 100, cursor: nil).entries
                #expect(got.count == ids.count, "\(user.unicodeScalars.count) scalars")
                #expect(got.allSatisfy { Array($0.userID.utf8) == Array(user.utf8) }, "never the other spelling's rows")
                let expected = ids.map { Array("\(user)/\($0)".utf8) }.sorted { $0.lexicographicallyPrecedes($1) }.reversed()
                #expect(got.map { Array($0.id.utf8) } == Array(expected), "ties ordered by the UTF-8 bytes of the id, descending")
                let paged = try await S.allPages(store, user: user, limit: 3).flatMap(\.entries)
                #expect(paged.map { Array($0.id.utf8) } == Array(expected))
            }
            #expect(try await store.deleteUser(nfd).entries == ids.count)
            #expect(try await store.entries(user: nfc, limit: 100, cursor: nil).entries.count == ids.count)
        }
    }

    @Test func analysisAndSnapshotBytesRoundTripExactlyWhileJSONBIsQueryable() async throws {
        try await withStore { store, database async throws in
            let analyses = [
                #"{"b":1,"a":2}"#,
                #"{ "a" : [1, 2.50, 1e2, -0] ,"dup":1,"dup":2 }"#,
                "{\n\t\"s\": \"\\u00e9\\ud83e\\udde0 \\/ \\\"q\\\"\"\n}\n",
                #"[]"#, #""just a string""#, #"null"#, #"{"emotion":{"dominant":"joy","valence":0.5000}}"#,
                "{\"big\":[" + (0..<5_000).map { "\($0).0" }.joined(separator: ", ") + "]}",
            ]
            var entries: [Entry] = []
            for (i, analysis) in analyses.enumerated() {
                let entry = S.entry(user: "alice", milliseconds: S.baseMilliseconds + Int64(i), analysis: Array(analysis.utf8))
                #expect(try await store.insertEntry(entry, idempotencyKey: "k\(i)") == .inserted(entry))
                #expect(try await store.entry(user: "alice", id: entry.id)?.analysis == entry.analysis, "\(analysis.prefix(40))")
                #expect(try await store.insertEntry(S.entry(user: "alice"), idempotencyKey: "k\(i)").entry.analysis == entry.analysis)
                entries.append(entry)
            }
            #expect(try await store.entries(user: "alice", limit: 100, cursor: nil).entries == entries.reversed())

            // The generated JSONB column is normalised (so it could never have given the bytes back) and queryable.
            let first = try await database.client.query("SELECT analysis::text, analysis->>'a' FROM entries WHERE id = $1", [.text(entries[0].id)])
            #expect(first.rows.first?.string(0) == #"{"a": 2, "b": 1}"#)
            #expect(first.rows.first?.string(1) == "2")
            #expect(try await scalar(database.client, "SELECT count(*) FROM entries WHERE analysis @> '{\"emotion\":{\"dominant\":\"joy\"}}'") == 1)

            let snapshot = Array("{ \"mood\" :\"calm 😌\",\n \"entries\": [3, 1.50] }".utf8)
            let profile = ProfileSnapshot(userID: "alice", snapshot: snapshot, updatedAt: UnixMilliseconds.date(S.baseMilliseconds))
            try await store.saveProfile(profile)
            #expect(try await store.profile(user: "alice") == profile)
            #expect(try await database.client.query("SELECT snapshot->>'mood' FROM profiles").rows.first?.string(0) == "calm 😌")
        }
    }

    @Test func valuesPostgreSQLCannotHoldAreRefusedAndNeverFound() async throws {
        try await withStore { store, database async throws in
            let cases: [(String, Entry)] = [
                ("invalid JSON", S.entry(user: "alice", analysis: Array("{not json".utf8))),
                ("a raw newline inside a JSON string", S.entry(user: "alice", analysis: Array("{\"t\":\"a\nb\"}".utf8))),
                ("not UTF-8", S.entry(user: "alice", analysis: [0x7B, 0xFF, 0x7D])),
                ("NUL in the text", S.entry(user: "alice", text: "a\u{0}b")),
                ("NUL in the user id", S.entry(user: "al\u{0}ice")),
            ]
            for (what, entry) in cases {
                let error = await #expect(throws: StoreError.self, "\(what)") { try await store.insertEntry(entry, idempotencyKey: "k") }
                #expect(error?.code == .failed, "\(what)")
            }
            let profileError = await #expect(throws: StoreError.self) {
                try await store.saveProfile(ProfileSnapshot(userID: "alice", snapshot: Array("plain text".utf8), updatedAt: Date()))
            }
            #expect(profileError?.code == .failed)
            #expect(try await scalar(database.client, "SELECT count(*) FROM entries") == 0, "nothing was written")
            #expect(try await scalar(database.client, "SELECT count(*) FROM idempotency_keys") == 0)

            // Lookups by such an id (e.g. a %00 in a URL) simply find nothing.
            let entry = S.entry(user: "alice")
            _ = try await store.insertEntry(entry, idempotencyKey: nil)
            #expect(try await store.entry(user: "alice", id: entry.id + "\u{0}") == nil)
            #expect(try await !store.deleteEntry(user: "alice", id: "\u{0}"))
            #expect(try await store.entries(user: "alice\u{0}", limit: 10, cursor: nil).entries.isEmpty)
            #expect(try await store.recentEntries(user: "\u{0}", limit: 10).isEmpty)
            #expect(try await store.profile(user: "\u{0}") == nil)
            #expect(try await store.deleteUser("alice\u{0}") == UserErasure())
            #expect(try await store.entry(user: "alice", id: entry.id) == entry)
        }
    }

    // MARK: - Races between instances

    /// Runs `body` with two stores on one fresh, migrated database through independent clients (pools),
    /// as two instances of the service would have.
    func withTwoInstances(_ body: ([PostgresStore], PostgresTestDatabase) async throws -> Void) async throws {
        try await withStore { store, database async throws in
            let second = try database.makeClient(poolSize: 5)
            defer { second.close() }
            try await body([store, PostgresStore(client: second)], database)
        }
    }

    /// Runs `writers` inserts at once, alternating between `stores`; `write(i)` is writer i's entry and key.
    func insertConcurrently(
        _ stores: [PostgresStore], writers: Int = 10, _ write: (Int) -> (Entry, String?)
    ) async throws -> [EntryInsertResult] {
        try await withThrowingTaskGroup(of: EntryInsertResult.self) { group in
            for writer in 0..<writers {
                let (entry, key) = write(writer)
                group.addTask { try await stores[writer % stores.count].insertEntry(entry, idempotencyKey: key) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    @Test func concurrentInsertsWithOneIdempotencyKeyStoreExactlyOneEntry() async throws {
        try await withTwoInstances { stores, database async throws in
            let store = stores[0]
            for round in 0..<5 {
                // Each writer has its own entry id; all retry with the same key.
                let key = "retry-\(round)"
                let results = try await insertConcurrently(stores) { writer in
                    (S.entry(user: "alice", text: "writer \(writer)", milliseconds: S.baseMilliseconds + Int64(round)), key)
                }
                let inserted = results.filter { if case .inserted = $0 { true } else { false } }
                #expect(inserted.count == 1, "round \(round): \(results)")
                #expect(Set(results.map(\.entry.id)).count == 1, "round \(round): every writer answers the same entry")
                #expect(
                    try await scalar(database.client, "SELECT count(*) FROM entries WHERE created_at = $1", [.integer(S.baseMilliseconds + Int64(round))]) == 1)
                #expect(try await scalar(database.client, "SELECT count(*) FROM idempotency_keys WHERE key = $1", [.text(key)]) == 1)
                let winner = try #require(inserted.first?.entry)
                #expect(try await store.entry(user: "alice", id: winner.id) == winner)
            }
            #expect(try await store.recentEntries(user: "alice", limit: 100).count == 5)
        }
    }

    @Test func erasingAUserLogsANoticeByTagThatOtherInstancesRead() async throws {
        try await withTwoInstances { stores, database async throws in
            let before = try await stores[1].erasures(after: 0, limit: 1000).last?.id ?? 0
            _ = try await stores[0].insertEntry(S.entry(user: "erased-one", text: "gone soon", milliseconds: S.baseMilliseconds), idempotencyKey: nil)
            _ = try await stores[0].deleteUser("erased-one")
            _ = try await stores[0].deleteUser("erased-two")
            let notices = try await stores[1].erasures(after: before, limit: 1000)
            #expect(notices.map(\.user) == [UserTag("erased-one"), UserTag("erased-two")])
            #expect(notices[0].id < notices[1].id)
            #expect(try await stores[1].erasures(after: notices[1].id, limit: 1000).isEmpty)
            // The log holds tags, never ids.
            #expect(try await scalar(database.client, "SELECT count(*) FROM user_erasures WHERE user_tag LIKE 'erased%'") == 0)
        }
    }

    @Test func aWriteAcknowledgedBeforeItsUsersErasureIsNotReplayedBack() async throws {
        try await withTwoInstances { stores, database async throws in
            let now = UnixMilliseconds.from(Date())
            _ = try await stores[0].deleteUser("ghost")
            // An outbox replay of a write acknowledged ten seconds before the erasure: dropped.
            let replay = try await stores[1].insertEntry(S.entry(user: "ghost", text: "from before", milliseconds: now - 10_000), idempotencyKey: nil)
            #expect(!replay.isInsertedForTest)
            #expect(try await stores[1].entries(user: "ghost", limit: 10, cursor: nil).entries.isEmpty)
            // A new write after the erasure is a new write.
            let fresh = try await stores[1].insertEntry(S.entry(user: "ghost", text: "from after", milliseconds: now + 50), idempotencyKey: nil)
            #expect(fresh.isInsertedForTest)
            #expect(try await stores[1].entries(user: "ghost", limit: 10, cursor: nil).entries.map(\.text) == ["from after"])
        }
    }

    @Test func concurrentReplaysOfOneEntryIDStoreItOnce() async throws {
        try await withTwoInstances { stores, database async throws in
            let store = stores[0]
            for round in 0..<5 {
                // Outbox replays of one entry; some of them also carry a key.
                let entry = S.entry(user: "alice", text: "queued \(round)")
                let results = try await insertConcurrently(stores) { writer in (entry, writer % 4 == 0 ? "replay-\(round)" : nil) }
                #expect(results.filter { $0 == .inserted(entry) }.count == 1, "round \(round): \(results)")
                #expect(results.allSatisfy { $0.entry == entry })
                #expect(try await scalar(database.client, "SELECT count(*) FROM entries WHERE id = $1", [.text(entry.id)]) == 1)
            }
            // Bob replaying alice's id still fails, and reveals nothing.
            let alices = try #require(try await store.recentEntries(user: "alice", limit: 1).first)
            let error = await #expect(throws: StoreError.self) { try await stores[1].insertEntry(S.entry(user: "bob", id: alices.id), idempotencyKey: nil) }
            #expect(error?.code == .failed)
            #expect(!(error?.detail.contains(alices.text) ?? true))
        }
    }

    // MARK: - Failures

    @Test func anUnmigratedDatabaseFailsAndAnUnreachableOneIsUnavailable() async throws {
        try await withStore(migrated: false) { store, _ async throws in
            #expect(await store.isHealthy())
            let unmigrated = await #expect(throws: StoreError.self) { try await store.entries(user: "alice", limit: 1, cursor: nil) }
            #expect(unmigrated?.code == .failed)
        }

        // Nothing listens on port 1.
        let nowhere = try PostgresClient(url: "postgresql://soma@127.0.0.1:1/soma", connectTimeout: .seconds(1))
        let unreachable = PostgresStore(client: nowhere)
        #expect(await !unreachable.isHealthy())
        for call in [
            { try await unreachable.migrate() },
            { _ = try await unreachable.entry(user: "alice", id: "x") },
            { _ = try await unreachable.insertEntry(S.entry(user: "alice"), idempotencyKey: "k") },
            { _ = try await unreachable.deleteUser("alice") },
        ] as [@Sendable () async throws -> Void] {
            let error = await #expect(throws: StoreError.self) { try await call() }
            #expect(error?.code == .unavailable)
        }

        let database = try await PostgresTestDatabase.create()
        let store = PostgresStore(client: database.client)
        try await store.migrate()
        await database.drop()
        #expect(await !store.isHealthy())
        let closed = await #expect(throws: StoreError.self) { try await store.recentEntries(user: "alice", limit: 1) }
        #expect(closed?.code == .unavailable)
    }
}

extension Entry {
    /// `createdAt` in unix milliseconds.
    var createdAtMilliseconds: Int64 { UnixMilliseconds.from(createdAt) }
}

extension EntryInsertResult {
    var isInsertedForTest: Bool {
        if case .inserted = self { return true }
        return false
    }
}
