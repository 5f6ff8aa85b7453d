import Foundation
import Soma
import Testing

/// A store made for one test, and what tears it down afterwards.
struct StoreUnderTest: Sendable {
    let store: any Store
    let tearDown: @Sendable () async -> Void
}

/// One `Store` implementation the conformance suite runs against. Adding a store (PostgreSQL)
/// means adding one factory to `all`; each call of `make` must return an empty, unmigrated store
/// that no other test uses.
struct StoreFactory: Sendable, CustomTestStringConvertible {
    let name: String
    /// Whether `make` needs the PostgreSQL test server (see `withStore`).
    var requiresPostgres = false
    let make: @Sendable () async throws -> StoreUnderTest

    var testDescription: String { name }

    static let all: [StoreFactory] = [.sqlite, .postgres]

    /// SQLite in a file of its own temporary directory.
    static let sqlite = StoreFactory(name: "SQLite") {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("soma-store-it-\(UUID().uuidString)", isDirectory: true)
        let store = try SQLiteStore(path: directory.appendingPathComponent("soma.sqlite").path)
        return StoreUnderTest(store: store) {
            store.close()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// PostgreSQL in a database of its own on the shared test server (`PostgresTestDatabase`).
    static let postgres = StoreFactory(name: "PostgreSQL", requiresPostgres: true) {
        let database = try await PostgresTestDatabase.create()
        return StoreUnderTest(store: PostgresStore(client: database.client)) { await database.drop() }
    }

    /// Runs `body` with a fresh store (migrated unless told otherwise), then tears it down.
    ///
    /// A factory that needs PostgreSQL skips the test when no server can be started outside CI, as
    /// `.requiresPostgres` does for a whole suite; under `CI=true` the failure to start one fails it.
    func withStore(migrated: Bool = true, _ body: (any Store) async throws -> Void) async throws {
        if requiresPostgres, !(await PostgresHarness.shouldRun()) {
            try Test.cancel("PostgreSQL could not be started (skipped outside CI)")
        }
        let made = try await make()
        do {
            if migrated { try await made.store.migrate() }
            try await body(made.store)
        } catch {
            await made.tearDown()
            throw error
        }
        await made.tearDown()
    }
}

/// Builders for stored values.
enum StoreSamples {
    /// A fixed instant (2024-01-01T00:00:00Z) in unix milliseconds.
    static let baseMilliseconds: Int64 = 1_704_067_200_000

    static func analysis(_ label: String = "joy") -> [UInt8] {
        Array(#"{"emotion":{"dominant":"\#(label)","valence":0.5}}"#.utf8)
    }

    static func entry(
        user: String,
        id: String = EntryID.generate(),
        text: String = "I walked to the sea today.",
        milliseconds: Int64 = baseMilliseconds,
        analysis: [UInt8] = analysis(),
        modelVersion: String = "test-models-1"
    ) -> Entry {
        Entry(id: id, userID: user, text: text, createdAt: UnixMilliseconds.date(milliseconds), analysis: analysis, modelVersion: modelVersion)
    }

    /// Every page of `user`'s entries at `limit` per page, following the cursors.
    static func allPages(_ store: any Store, user: String, limit: Int) async throws -> [EntryPage] {
        var pages: [EntryPage] = []
        var cursor: String?
        repeat {
            let page = try await store.entries(user: user, limit: limit, cursor: cursor)
            pages.append(page)
            cursor = page.nextCursor
        } while cursor != nil && pages.count < 1_000
        return pages
    }

    /// `text` as a JSON string literal (quotes included), escaped as JSON requires.
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Strings that look like SQL injection, or are otherwise awkward, but free of NUL.
    static let oddStrings = [
        "'; DROP TABLE entries; --",
        "Robert'); DROP TABLE users;--",
        "\" OR 1=1 --",
        "' OR '1'='1",
        "%_\\?:1 $1 @p",
        "ünïcödé 日本語 עברית 🧠👩‍👩‍👧‍👦 \u{202E}txet",
        "  spaces around  ",
        "line\nbreak\ttab\r\n",
        "",
    ]
}
