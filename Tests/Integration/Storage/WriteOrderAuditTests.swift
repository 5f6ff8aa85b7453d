import Foundation
import Logging
import Soma
import SomaLoad
import Testing

/// The write audit of the chaos suite (`WriteAudit`, docs/RELIABILITY.md) against a real
/// PostgreSQL: the outbox's replay passes it, and a replay in the wrong order fails it. The
/// audit reads the order the database received rows in (`entries.received`), not the listing
/// order, which `created_at` (set at acknowledgement) would make right whatever the replay did.
@Suite(.requiresPostgres, .timeLimit(.minutes(2)))
struct WriteOrderAuditTests {
    typealias S = StoreSamples

    /// `count` writes of `user` queued in an outbox, acknowledged one after another (each answered
    /// before the next was sent), as the ledger of a run records them.
    func queuedOutage(user: String, count: Int, in directory: URL) throws -> (Outbox, [WriteRecord]) {
        let outbox = try Outbox(path: directory.appendingPathComponent("outbox-\(user).sqlite").path, target: "test-database")
        var ledger: [WriteRecord] = []
        for i in 0..<count {
            let entry = S.entry(user: user, text: "queued \(i)", milliseconds: S.baseMilliseconds + Int64(i))
            _ = try outbox.enqueue(entry, idempotencyKey: "k\(i)")
            ledger.append(
                WriteRecord(
                    user: user, key: "k\(i)", entryID: entry.id, status: 202, instance: "soma-1", sentMicros: Int64(i) * 10,
                    answeredMicros: Int64(i) * 10 + 5))
        }
        return (outbox, ledger)
    }

    func received(_ store: PostgresStore, users: [String]) async throws -> [ReceivedEntry] {
        var rows: [ReceivedEntry] = []
        for user in users {
            rows += try await store.receivedOrder(user: user).map { ReceivedEntry(id: $0.id, user: user, received: $0.received) }
        }
        return rows
    }

    @Test func theOutboxReplayPassesAndAMisorderedReplayFails() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try await PostgresTestDatabase.with { database async throws in
            let store = PostgresStore(client: database.client)
            try await store.migrate()

            // The replayer, oldest first: every pair in order.
            let (outbox, ledger) = try queuedOutage(user: "in-order", count: 20, in: directory)
            let replayer = OutboxReplayer(outbox: outbox, store: store, breaker: nil, metrics: SomaMetrics(), logger: Logger(label: "test"))
            let flushed = await replayer.flushOnce()
            #expect(flushed.replayed == 20 && flushed.remaining == 0)
            let good = WriteAudit(writes: ledger, received: try await received(store, users: ["in-order"]))
            #expect(good.passed, "\(good)")
            #expect(good.acknowledged == 20 && good.queued == 20 && good.orderedPairs == 190 && good.reordered == 0)

            // The same kind of backlog replayed newest first: the audit goes red. So does one swap.
            let (reversed, reversedLedger) = try queuedOutage(user: "reversed", count: 20, in: directory)
            for item in try reversed.oldest(limit: 100).reversed() { _ = try await store.insertEntry(item.entry, idempotencyKey: item.idempotencyKey) }
            let bad = WriteAudit(writes: reversedLedger, received: try await received(store, users: ["reversed"]))
            #expect(!bad.passed && bad.reordered == 190 && bad.missing == 0 && bad.duplicated == 0, "\(bad)")

            let (swapped, swappedLedger) = try queuedOutage(user: "swapped", count: 5, in: directory)
            var items = try swapped.oldest(limit: 100)
            items.swapAt(1, 2)
            for item in items { _ = try await store.insertEntry(item.entry, idempotencyKey: item.idempotencyKey) }
            let oneSwap = WriteAudit(writes: swappedLedger, received: try await received(store, users: ["swapped"]))
            #expect(!oneSwap.passed && oneSwap.reordered == 1, "\(oneSwap)")

            // A lost entry and a duplicated write are red too.
            let (lossy, lossyLedger) = try queuedOutage(user: "lossy", count: 4, in: directory)
            let lossyItems = try lossy.oldest(limit: 100)
            for item in lossyItems.dropLast() { _ = try await store.insertEntry(item.entry, idempotencyKey: item.idempotencyKey) }
            // The last write stored twice under two ids, as a replay that forgot its key would.
            var twin = lossyItems[2].entry
            twin.id = EntryID.generate()
            _ = try await store.insertEntry(twin, idempotencyKey: nil)
            let lost = WriteAudit(writes: lossyLedger, received: try await received(store, users: ["lossy"]))
            #expect(!lost.passed && lost.missing == 1 && lost.duplicated == 0, "\(lost)")
            _ = try await store.insertEntry(lossyItems[3].entry, idempotencyKey: lossyItems[3].idempotencyKey)
            var third = lossyItems[0].entry
            third.id = EntryID.generate()
            _ = try await store.insertEntry(third, idempotencyKey: nil)
            let duplicated = WriteAudit(writes: lossyLedger, received: try await received(store, users: ["lossy"]))
            #expect(!duplicated.passed && duplicated.missing == 0 && duplicated.duplicated == 2, "\(duplicated)")
        }
    }

    @Test func writesInFlightTogetherOrOnOtherInstancesHaveNoOrderToKeep() {
        // b was sent before a was answered; c went through another instance.
        let writes = [
            WriteRecord(user: "u", key: "a", entryID: "a", status: 201, instance: "soma-1", sentMicros: 0, answeredMicros: 10),
            WriteRecord(user: "u", key: "b", entryID: "b", status: 201, instance: "soma-1", sentMicros: 5, answeredMicros: 15),
            WriteRecord(user: "u", key: "c", entryID: "c", status: 202, instance: "soma-2", sentMicros: 20, answeredMicros: 25),
            WriteRecord(user: "u", key: "d", sentMicros: 30),
        ]
        let rows = [
            ReceivedEntry(id: "c", user: "u", received: 1), ReceivedEntry(id: "b", user: "u", received: 2), ReceivedEntry(id: "a", user: "u", received: 3),
        ]
        let audit = WriteAudit(writes: writes, received: rows)
        #expect(audit.passed && audit.orderedPairs == 0 && audit.unacknowledged == 1 && audit.acknowledged == 3, "\(audit)")
        // The unacknowledged write stored anyway is allowed once, not twice.
        let stored = WriteAudit(writes: writes, received: rows + [ReceivedEntry(id: "d", user: "u", received: 4)])
        #expect(stored.passed && stored.storedUnacknowledged == 1)
        let twice = WriteAudit(
            writes: writes, received: rows + [ReceivedEntry(id: "d", user: "u", received: 4), ReceivedEntry(id: "d2", user: "u", received: 5)])
        #expect(!twice.passed && twice.duplicated == 1)
    }
}
