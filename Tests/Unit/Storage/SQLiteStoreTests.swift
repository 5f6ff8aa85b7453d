import Foundation
import Soma
import Testing

/// What only the SQLite store shows: the file, several processes, the users table.
@Suite(.timeLimit(.minutes(1)))
struct SQLiteStoreTests {
    typealias S = SQLiteSamples

    /// Runs `body` with a fresh temporary directory, removed afterwards.
    func withDirectory(_ body: (StoreTestDirectory) async throws -> Void) async throws {
        let directory = try StoreTestDirectory()
        defer { directory.remove() }
        try await body(directory)
    }

    @Test func dataSurvivesClosingAndReopeningTheFile() async throws {
        try await withDirectory { directory async throws in
            let path = directory.database()
            let entry = S.entry(user: "alice", text: "kept on disk 💾")
            let profile = ProfileSnapshot(userID: "alice", snapshot: Array(#"{"k":1}"#.utf8), updatedAt: UnixMilliseconds.date(S.baseMilliseconds))
            do {
                let store = try SQLiteStore(path: path)
                try await store.migrate()
                _ = try await store.insertEntry(entry, idempotencyKey: "key")
                try await store.saveProfile(profile)
                try await store.recordUser("alice", tier: .premium)
                store.close()
            }
            let reopened = try SQLiteStore(path: path)
            defer { reopened.close() }
            #expect(try await reopened.appliedMigrations() == [1])
            try await reopened.migrate()
            #expect(try await reopened.entry(user: "alice", id: entry.id) == entry)
            #expect(try await reopened.profile(user: "alice") == profile)
            #expect(try await reopened.user("alice")?.tier == .premium)
            #expect(try await reopened.insertEntry(S.entry(user: "alice"), idempotencyKey: "key") == .existing(entry))
        }
    }

    @Test func concurrentMigrationsOnOneFileAllSucceed() async throws {
        try await withDirectory { directory async throws in
            let path = directory.database()
            let versions = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let store = try SQLiteStore(path: path)
                        defer { store.close() }
                        try await store.migrate()
                        return try await store.appliedMigrations()
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(versions == Array(repeating: [1], count: 4))
            let store = try SQLiteStore(path: path)
            defer { store.close() }
            #expect(try await store.appliedMigrations() == [1], "each version recorded once")
        }
    }

    @Test func concurrentWritersOnOneFileWaitForEachOther() async throws {
        try await withDirectory { directory async throws in
            let path = directory.database()
            let setup = try SQLiteStore(path: path)
            defer { setup.close() }
            try await setup.migrate()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        let store = try SQLiteStore(path: path)
                        defer { store.close() }
                        for i in 0..<25 {
                            _ = try await store.insertEntry(
                                S.entry(user: "alice", milliseconds: S.baseMilliseconds + Int64(i)), idempotencyKey: "w\(writer)-\(i % 20)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await setup.recentEntries(user: "alice", limit: 1_000).count == 80, "4 writers × 20 distinct keys")
        }
    }

    @Test func recordUserKeepsTheLastTierAndTheFirstSighting() async throws {
        try await withDirectory { directory async throws in
            let store = try SQLiteStore(path: directory.database())
            defer { store.close() }
            try await store.migrate()
            #expect(try await store.user("alice") == nil)

            try await store.recordUser("alice", tier: .free)
            let first = try #require(try await store.user("alice"))
            #expect(first.tier == .free)
            #expect(first.createdAt == first.lastSeenAt)

            try await Task.sleep(for: .milliseconds(5))
            try await store.recordUser("alice", tier: .premium)
            try await store.recordUser("alice", tier: .standard)
            try await store.recordUser("alice", tier: .premium)
            let last = try #require(try await store.user("alice"))
            #expect(last.tier == .premium, "the last tier wins")
            #expect(last.createdAt == first.createdAt)
            #expect(last.lastSeenAt > first.lastSeenAt)

            _ = try await store.insertEntry(S.entry(user: "alice"), idempotencyKey: nil)
            #expect(try await store.user("alice")?.tier == .premium, "an entry does not reset the tier")
            _ = try await store.insertEntry(S.entry(user: "dave"), idempotencyKey: nil)
            #expect(try await store.user("dave")?.tier == .standard, "an unknown user is recorded as standard")
            _ = try await store.deleteUser("alice")
            #expect(try await store.user("alice") == nil)
        }
    }

    @Test func opensInWALModeAndCreatesParentDirectories() async throws {
        try await withDirectory { directory async throws in
            let path = directory.url.appendingPathComponent("a/b/c/soma.sqlite").path
            let store = try SQLiteStore(path: path)
            defer { store.close() }
            try await store.migrate()
            #expect(FileManager.default.fileExists(atPath: path))
            #expect(FileManager.default.fileExists(atPath: path + "-wal"), "WAL journal in use")
            #expect(await store.isHealthy())
        }
    }

    @Test func aClosedStoreIsUnhealthyAndUnavailable() async throws {
        try await withDirectory { directory async throws in
            let store = try SQLiteStore(path: directory.database())
            try await store.migrate()
            #expect(await store.isHealthy())
            store.close()
            #expect(await !store.isHealthy())
            let error = await #expect(throws: StoreError.self) { try await store.entry(user: "alice", id: "x") }
            #expect(error?.code == .unavailable)
        }
    }

    @Test func anUnopenablePathIsUnavailable() async throws {
        try await withDirectory { directory async throws in
            let file = directory.url.appendingPathComponent("plain-file")
            try Data("not a directory".utf8).write(to: file)
            let error = #expect(throws: StoreError.self) { try SQLiteStore(path: file.appendingPathComponent("soma.sqlite").path) }
            #expect(error?.code == .unavailable)

            let notADatabase = directory.url.appendingPathComponent("garbage.sqlite")
            try Data(repeating: 0x5A, count: 4_096).write(to: notADatabase)
            let garbage = #expect(throws: StoreError.self) { try SQLiteStore(path: notADatabase.path) }
            #expect(garbage != nil)
        }
    }

    @Test func usingTheSchemaBeforeMigratingFails() async throws {
        let store = try SQLiteStore(path: SQLiteStore.inMemoryPath)
        defer { store.close() }
        #expect(try await store.appliedMigrations() == [])
        #expect(await store.isHealthy(), "healthy means reachable, schema or not")
        let error = await #expect(throws: StoreError.self) { try await store.entries(user: "alice", limit: 1, cursor: nil) }
        #expect(error?.code == .failed)
        try await store.migrate()
        #expect(try await store.entries(user: "alice", limit: 1, cursor: nil).entries.isEmpty)
    }

    @Test func inMemoryStoreServesTheContract() async throws {
        let store = try SQLiteStore(path: SQLiteStore.inMemoryPath)
        defer { store.close() }
        try await store.migrate()
        try await store.migrate()
        #expect(try await store.appliedMigrations() == [1])
        let entry = S.entry(user: "alice")
        #expect(try await store.insertEntry(entry, idempotencyKey: "k") == .inserted(entry))
        #expect(try await store.entries(user: "alice", limit: 5, cursor: nil).entries == [entry])
    }
}
