import Foundation
import Logging
import MetricsTestKit
import ServiceLifecycle
import Soma
import Synchronization
import Testing

/// Entries belong to the database they were acknowledged for: an outbox never replays them into
/// another one, keeps them, and says so. The fixtures (`OutboxFixture`) are in OutboxTests.swift.
@Suite struct OutboxDatabaseTests {
    static let a = DatabaseIdentity(systemIdentifier: "7300000000000000001", name: "soma")
    static let b = DatabaseIdentity(systemIdentifier: "7300000000000000002", name: "soma")

    func entry(_ user: String, _ text: String = "t") -> Entry {
        Entry(id: EntryID.generate(), userID: user, text: text, createdAt: Date(), analysis: Array("{}".utf8), modelVersion: "m")
    }

    func withPath(_ body: (String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-db-\(UUID().uuidString)", isDirectory: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await body(directory.appendingPathComponent("outbox.sqlite").path)
    }

    @Test func entriesQueuedBeforeTheIdentityIsKnownBelongToTheTargetAndAreRemembered() async throws {
        try await withPath { path in
            let outbox = try Outbox(path: path, target: "db-host:5432/soma")
            #expect(outbox.stamp == "target:db-host:5432/soma")
            _ = try outbox.enqueue(entry("ada"), idempotencyKey: "k1")
            #expect(try outbox.bind(to: Self.a) == 0)
            #expect(outbox.stamp == "pg:7300000000000000001/soma" && outbox.pendingCount == 1 && outbox.heldCount == 0)
            outbox.close()
            // Restarted while the database is down: the identity of the target is remembered.
            let reopened = try Outbox(path: path, target: "db-host:5432/soma")
            defer { reopened.close() }
            #expect(reopened.stamp == "pg:7300000000000000001/soma" && reopened.pendingCount == 1)
            _ = try reopened.enqueue(entry("ada"), idempotencyKey: "k2")
            #expect(reopened.pendingCount == 2 && reopened.heldCount == 0)
        }
    }

    @Test func aRepointedTargetHoldsTheOldEntriesAndNeverReplaysThem() async throws {
        try await withPath { path in
            let old = try Outbox(path: path, target: "old-host:5432/soma")
            _ = try old.enqueue(entry("ada", "for the old database"), idempotencyKey: "k1")
            _ = try old.enqueue(entry("bo"), idempotencyKey: nil)
            try old.bind(to: Self.a)
            old.close()

            // DATABASE_URL now names another server: what was queued is held, and new writes queue
            // apart from it (the same Idempotency-Key is a new write there).
            let outbox = try Outbox(path: path, target: "new-host:5432/soma")
            defer { outbox.close() }
            #expect(outbox.pendingCount == 0 && outbox.heldCount == 2)
            #expect(try outbox.oldest(limit: 10).isEmpty)
            #expect(try outbox.queued(user: "ada", idempotencyKey: "k1") == nil)
            let fresh = try outbox.enqueue(entry("ada", "for the new database"), idempotencyKey: "k1")
            #expect(fresh.entry.text == "for the new database" && outbox.pendingCount == 1)
            let health = outbox.probe()
            #expect(health.writable && health.held == 2 && health.pending == 1)
            #expect(health.problem?.contains("pg:7300000000000000001/soma") == true, "\(health.problem ?? "")")

            // The new target turns out to be another database: still held.
            #expect(try outbox.bind(to: Self.b) == 2)
            #expect(try outbox.oldest(limit: 10).map(\.entry.text) == ["for the new database"])
            // Erasing a user reaches the held entries too.
            #expect(try outbox.deleteUser("bo") == 1)
            #expect(outbox.heldCount == 1)
            // Had it been the same database under a new name, they would be pending again, in order.
            #expect(try outbox.bind(to: Self.a) == 1)
            #expect(try outbox.oldest(limit: 10).map(\.entry.text) == ["for the old database"])
            // Removing rows keeps both counts right without a recount. Rows: 1 the old database's
            // (pending again), 3 the new target's (held now); 2 was erased with its user.
            #expect(try outbox.oldest(limit: 10).map(\.seq) == [1])
            try outbox.remove(seqs: [3, 99])  // the held row, and one that is not there
            #expect(outbox.pendingCount == 1 && outbox.heldCount == 0)
            try outbox.remove(seqs: [1])
            #expect(outbox.pendingCount == 0 && outbox.heldCount == 0)
            let reopened = try Outbox(path: path, target: "new-host:5432/soma")
            defer { reopened.close() }
            #expect(outbox.pendingCount == reopened.pendingCount && outbox.heldCount == reopened.heldCount)
        }
    }

    @Test func theReplayerReplaysOnlyIntoTheDatabaseTheEntriesWereQueuedFor() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        let outbox = fixture.outbox
        for i in 0..<3 { _ = try outbox.enqueue(OutboxFixture.entry(user: "ada", text: "queued \(i)"), idempotencyKey: nil) }
        try outbox.bind(to: Self.a)
        // The store now answers as another database (a fresh one at the same address).
        fixture.store.set(identity: .success(Self.b))
        let replayer = fixture.replayer()
        let pass = await replayer.flushOnce()
        #expect(pass.replayed == 0 && pass.remaining == 0)
        #expect(fixture.store.calls == 0, "nothing reached the other database")
        #expect(outbox.heldCount == 3)
        #expect(try fixture.metrics.expectGauge("soma_outbox_held").lastValue == 3)
        // An outage while asking counts as a failed pass, not as another database.
        fixture.store.set(identity: .failure(StoreError(.unavailable, "fake outage")))
        #expect(await replayer.flushOnce().replayed == 0)
        #expect(outbox.heldCount == 3)
        fixture.store.set(identity: .success(Self.a))
        let back = await replayer.flushOnce()
        #expect(back.replayed == 3 && back.remaining == 0 && outbox.heldCount == 0)
        #expect(try await fixture.base.entries(user: "ada", limit: 10, cursor: nil).entries.count == 3)
    }
}
