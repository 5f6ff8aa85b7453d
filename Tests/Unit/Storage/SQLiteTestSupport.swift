import Foundation
import Soma

/// A unique scratch directory under the system temporary directory, removed by `remove()`.
struct StoreTestDirectory: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("soma-store-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// The path of a database file inside the directory.
    func database(_ name: String = "soma.sqlite") -> String { url.appendingPathComponent(name).path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Entries for the SQLite-only tests. The conformance suite over every store (and its richer
/// builders, `StoreSamples`) lives in IntegrationTests, next to the PostgreSQL store it also covers.
enum SQLiteSamples {
    /// A fixed instant (2024-01-01T00:00:00Z) in unix milliseconds.
    static let baseMilliseconds: Int64 = 1_704_067_200_000

    /// A new entry of `user` with a fresh id.
    static func entry(user: String, text: String = "I walked to the sea today.", milliseconds: Int64 = baseMilliseconds) -> Entry {
        let analysis = Array(#"{"emotion":{"dominant":"joy"}}"#.utf8)
        return Entry(
            id: EntryID.generate(), userID: user, text: text, createdAt: UnixMilliseconds.date(milliseconds), analysis: analysis, modelVersion: "test-models-1")
    }
}
