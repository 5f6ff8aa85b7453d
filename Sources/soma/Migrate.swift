import ArgumentParser
import Foundation
import Soma
import SomaHTTP

/// `soma migrate`: creates or upgrades the schema of the configured store (PostgreSQL with
/// `DATABASE_URL`, else the embedded SQLite file) and exits; idempotent, safe from several
/// processes at once.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create or upgrade the database schema (DATABASE_URL, else the embedded SQLite file).")

    func run() async throws {
        let configuration: ServerConfiguration
        do { configuration = try ServerConfiguration.fromEnvironment() } catch { throw ValidationError("\(error)") }
        let store: any Store
        let target: String
        if let url = configuration.databaseURL {
            let client = try PostgresClient(url: url, poolSize: 1, connectTimeout: configuration.databaseTimeout, queryTimeout: .seconds(60), applicationName: "soma-migrate")
            defer { client.close() }
            store = PostgresStore(client: client)
            target = (try? PostgresURL(url).description) ?? "postgresql"
            try await store.migrate()
        } else {
            try FileManager.default.createDirectory(at: configuration.stateDirectory, withIntermediateDirectories: true)
            store = try SQLiteStore(path: configuration.resolvedSQLitePath)
            target = configuration.resolvedSQLitePath
            try await store.migrate()
        }
        print("migrate: schema up to date at \(target)")
    }
}
