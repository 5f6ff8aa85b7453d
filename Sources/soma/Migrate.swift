import ArgumentParser
import Foundation
import Soma

/// `soma migrate`: creates or upgrades the schema of the configured store (PostgreSQL with
/// `DATABASE_URL`, else the embedded SQLite file) and exits; idempotent, safe from several
/// processes at once. Uses the runtime's store choice, without models or HTTP.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create or upgrade the database schema (DATABASE_URL, else the embedded SQLite file).")

    @OptionGroup var common: CommonOptions

    func run() async throws {
        let (configuration, _, _) = try common.read(common.settings()) { _ throws(Settings.Invalid) in () }
        let target = try await SomaRuntime.withStore(configuration) { store, target in
            try await store.migrate()
            return target
        }
        print("migrate: schema up to date at \(target)")
    }
}
