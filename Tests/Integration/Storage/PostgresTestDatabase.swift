import Foundation
import Soma

/// A database of its own on the shared PostgreSQL test server (`PostgresHarness.shared()`), for one
/// test: created empty (`CREATE DATABASE t_<uuid>` through a client on the `soma` database) and dropped
/// by `drop()`, so tests never see each other's schema or rows.
struct PostgresTestDatabase: Sendable {
    let name: String
    /// `postgresql://soma@127.0.0.1:<port>/<name>`.
    let url: String
    /// A client on the database (the one a factory's store uses); closed by `drop()`.
    let client: PostgresClient
    private let admin: PostgresClient

    static func create() async throws -> PostgresTestDatabase {
        let harness = try await PostgresHarness.shared()
        // CREATE / DROP DATABASE copy or remove files: give them more than the default 2 s under load.
        let admin = try PostgresClient(url: harness.url, poolSize: 1, connectTimeout: .seconds(10), queryTimeout: .seconds(30))
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        do {
            // A generated identifier: DDL takes no parameters.
            _ = try await admin.query("CREATE DATABASE \(name)")
            let url = "postgresql://soma@\(harness.host):\(harness.port)/\(name)"
            return PostgresTestDatabase(name: name, url: url, client: try PostgresClient(url: url), admin: admin)
        } catch {
            admin.close()
            throw error
        }
    }

    /// Another, independent client on the database: what a second process would have.
    func makeClient(poolSize: Int = 4) throws -> PostgresClient {
        try PostgresClient(url: url, poolSize: poolSize, connectTimeout: .seconds(10), queryTimeout: .seconds(10))
    }

    /// Closes `client` and drops the database (ending any connection still open on it).
    func drop() async {
        client.close()
        _ = try? await admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        admin.close()
    }

    /// Runs `body` with a fresh database, dropped afterwards whatever happens.
    static func with(_ body: (PostgresTestDatabase) async throws -> Void) async throws {
        let database = try await create()
        do {
            try await body(database)
        } catch {
            await database.drop()
            throw error
        }
        await database.drop()
    }
}
