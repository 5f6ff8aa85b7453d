import Foundation
import Logging
import MetricsTestKit
import ServiceLifecycle
import Soma
import Synchronization
import Testing

/// A `Store` over a real `SQLiteStore` whose `insertEntry` can be switched to fail (as PostgreSQL
/// behind an open breaker or a timeout does) or to hang without honouring cancellation. It records
/// every insert that reached the real store, in order, with its result.
final class OutboxFlakyStore: Store {
    enum Mode: Sendable { case healthy, unavailable, hang }

    private struct State {
        var mode: Mode = .healthy
        /// Entry ids that fail even while healthy.
        var failing: Set<String> = []
        var calls = 0
        var results: [EntryInsertResult] = []
        var hanging: [CheckedContinuation<Void, Never>] = []
        var hangingCount = 0
        var released = false
        /// What `identity()` answers: the database this fake stands for; `nil` inside: it fails.
        var identity: Result<DatabaseIdentity?, StoreError> = .success(nil)
    }

    let base: SQLiteStore
    private let state = Mutex(State())

    init(base: SQLiteStore) { self.base = base }

    func set(_ mode: Mode) { state.withLock { $0.mode = mode } }
    func set(identity: Result<DatabaseIdentity?, StoreError>) { state.withLock { $0.identity = identity } }
    func identity() async throws -> DatabaseIdentity? { try state.withLock { $0.identity }.get() }
    func fail(id: String) { state.withLock { _ = $0.failing.insert(id) } }
    func heal() {
        state.withLock {
            $0.mode = .healthy; $0.failing = []
        }
    }
    var calls: Int { state.withLock { $0.calls } }
    var results: [EntryInsertResult] { state.withLock { $0.results } }
    var hangingCount: Int { state.withLock { $0.hangingCount } }

    /// Lets every hanging call (and every later one in `.hang`) go on, failing.
    func release() {
        let waiting = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.released = true
            defer { state.hanging = [] }
            return state.hanging
        }
        for continuation in waiting { continuation.resume() }
    }

    func insertEntry(_ entry: Entry, idempotencyKey: String?) async throws -> EntryInsertResult {
        let mode = state.withLock { state -> Mode in
            state.calls += 1
            return state.failing.contains(entry.id) ? .unavailable : state.mode
        }
        switch mode {
        case .unavailable:
            throw StoreError(.unavailable, "fake outage")
        case .hang:
            // Deliberately deaf to cancellation: only `release()` ends it.
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    state.hangingCount += 1
                    if state.released { return true }
                    state.hanging.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
            throw StoreError(.unavailable, "fake hang")
        case .healthy:
            let result = try await base.insertEntry(entry, idempotencyKey: idempotencyKey)
            state.withLock { $0.results.append(result) }
            return result
        }
    }

    func migrate() async throws { try await base.migrate() }
    func recordUser(_ userID: String, tier: Tier) async throws { try await base.recordUser(userID, tier: tier) }
    func entries(user: String, limit: Int, cursor: String?) async throws -> EntryPage {
        try await base.entries(user: user, limit: limit, cursor: cursor)
    }
    func entry(user: String, id: String) async throws -> Entry? { try await base.entry(user: user, id: id) }
    func entry(user: String, idempotencyKey: String) async throws -> Entry? { try await base.entry(user: user, idempotencyKey: idempotencyKey) }
    func erasures(after id: Int64, limit: Int) async throws -> [ErasureNotice] { try await base.erasures(after: id, limit: limit) }
    func deleteEntry(user: String, id: String) async throws -> Bool { try await base.deleteEntry(user: user, id: id) }
    func recentEntries(user: String, limit: Int) async throws -> [Entry] { try await base.recentEntries(user: user, limit: limit) }
    func mostActiveUsers(limit: Int) async throws -> [String] { try await base.mostActiveUsers(limit: limit) }
    func profile(user: String) async throws -> ProfileSnapshot? { try await base.profile(user: user) }
    func saveProfile(_ profile: ProfileSnapshot) async throws { try await base.saveProfile(profile) }
    func deleteUser(_ userID: String) async throws -> UserErasure { try await base.deleteUser(userID) }
    func isHealthy() async -> Bool { await base.isHealthy() }
}

/// A flag set from one task and polled from another.
final class OutboxFlag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// An outbox and a real SQLite store (behind the flaky fake) in a scratch directory, test metrics
/// and a manual clock.
struct OutboxFixture {
    let directory: URL
    let outbox: Outbox
    let base: SQLiteStore
    let store: OutboxFlakyStore
    let metrics = TestMetrics()
    let clock = ManualClock()

    static let quiet = Logger(label: "soma.test.outbox", factory: { _ in SwiftLogNoOpLogHandler() })
    static let baseMilliseconds: Int64 = 1_704_067_200_000

    init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("soma-outbox-tests-\(UUID().uuidString)", isDirectory: true)
        // The outbox creates its directory itself.
        outbox = try Outbox(path: directory.appendingPathComponent("state/outbox.sqlite").path, target: "test-database")
        base = try SQLiteStore(path: directory.appendingPathComponent("store.sqlite").path)
        try await base.migrate()
        store = OutboxFlakyStore(base: base)
    }

    var outboxPath: String { outbox.path }

    func replayer(outbox: Outbox? = nil, batchSize: Int = 100) -> OutboxReplayer {
        OutboxReplayer(
            outbox: outbox ?? self.outbox, store: store, breaker: nil, metrics: SomaMetrics(factory: metrics),
            logger: Self.quiet, batchSize: batchSize, clock: clock
        )
    }

    /// The values the `soma_outbox_pending` gauge took, in order.
    func gaugeValues() throws -> [Double] {
        try metrics.expectGauge("soma_outbox_pending").values
    }

    func tearDown() {
        outbox.close()
        base.close()
        try? FileManager.default.removeItem(at: directory)
    }

    /// An entry of `user` at `offset` ms after the base instant, with analysis bytes that are not
    /// valid UTF-8 and hold a NUL.
    static func entry(user: String, offset: Int64 = 0, text: String? = nil) -> Entry {
        let analysis = Array(#"{"emotion":{"dominant":"joy"},"n":\#(offset)}"#.utf8) + [0x00, 0xFF, 0xC3, 0x28]
        return Entry(
            id: EntryID.generate(), userID: user, text: text ?? "entry \(offset) of \(user) — ünïcödé",
            createdAt: UnixMilliseconds.date(baseMilliseconds + offset), analysis: analysis, modelVersion: "test-models-1"
        )
    }
}

/// Polls `condition` every few milliseconds for up to ~10 s; records an issue when it never holds.
func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
    for _ in 0..<2_000 {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    Issue.record("timed out waiting for \(what)")
    throw CancellationError()
}

/// Runs `replayer` in a `ServiceGroup`; returns the group and a flag set when `run()` returned.
func startGroup(_ replayer: OutboxReplayer) -> (ServiceGroup, OutboxFlag, Task<Void, any Error>) {
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: replayer)], logger: OutboxFixture.quiet))
    let finished = OutboxFlag()
    let task = Task {
        defer { finished.set() }
        try await group.run()
    }
    return (group, finished, task)
}

@Suite struct OutboxTests {
    @Test func enqueueIsDurableWithExactBytesAndOrder() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        var expected: [(entry: Entry, key: String?)] = []
        for i in 0..<20 {
            var entry = OutboxFixture.entry(user: "user-\(i % 3)", offset: Int64(i))
            if i == 7 { entry.analysis = [] }
            if i == 8 { entry.text = "" }
            let key: String? = i.isMultiple(of: 2) ? "key-\(i)" : (i == 5 ? "" : nil)
            #expect(try fixture.outbox.enqueue(entry, idempotencyKey: key) == .inserted(entry))
            expected.append((entry, key))
        }
        #expect(fixture.outbox.pendingCount == 20)

        // A second instance on the same file while the first was never closed: what a restart after
        // a crash finds.
        let reopened = try Outbox(path: fixture.outboxPath, target: "test-database")
        defer { reopened.close() }
        #expect(reopened.pendingCount == 20)
        let queued = try reopened.oldest(limit: 100)
        #expect(queued.map(\.entry) == expected.map(\.entry))
        #expect(queued.map(\.idempotencyKey) == expected.map(\.key))
        #expect(queued.map(\.seq) == queued.map(\.seq).sorted())
        #expect(Set(queued.map(\.seq)).count == 20)
        #expect(queued[0].entry.analysis.suffix(4) == [0x00, 0xFF, 0xC3, 0x28])
        #expect(queued.map { UnixMilliseconds.from($0.entry.createdAt) } == (0..<20).map { OutboxFixture.baseMilliseconds + Int64($0) })
        #expect(try reopened.oldest(limit: 3).map(\.entry) == expected.prefix(3).map(\.entry))
        #expect(try reopened.oldest(limit: 0).isEmpty)
        for (seq, _, _) in queued { #expect(try reopened.attempts(seq: seq)?.count == 0) }

        // createdAt is kept at millisecond precision: a finer instant is rounded once, on enqueue.
        var fine = OutboxFixture.entry(user: "user-fine")
        fine.createdAt = Date(timeIntervalSince1970: 1_704_067_200.123_456)
        let stored = try reopened.enqueue(fine, idempotencyKey: nil).entry
        #expect(UnixMilliseconds.from(stored.createdAt) == 1_704_067_200_123)
        #expect(try reopened.oldest(limit: 100).last?.entry == stored)
    }

    @Test func enqueueIsIdempotentPerUserAndKey() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        let outbox = fixture.outbox
        let first = OutboxFixture.entry(user: "alice", offset: 1)
        let retry = OutboxFixture.entry(user: "alice", offset: 2)
        let bobs = OutboxFixture.entry(user: "bob", offset: 3)

        #expect(try outbox.enqueue(first, idempotencyKey: "k1") == .inserted(first))
        #expect(try outbox.enqueue(retry, idempotencyKey: "k1") == .existing(first))
        #expect(outbox.pendingCount == 1)
        #expect(try outbox.oldest(limit: 10).count == 1)
        #expect(try outbox.queued(user: "alice", idempotencyKey: "k1") == first)
        #expect(try outbox.queued(user: "bob", idempotencyKey: "k1") == nil)

        // Another user with the same key is another request.
        #expect(try outbox.enqueue(bobs, idempotencyKey: "k1") == .inserted(bobs))
        #expect(try outbox.queued(user: "bob", idempotencyKey: "k1") == bobs)
        #expect(outbox.pendingCount == 2)

        // The same entry id again (a retried enqueue) is the queued one; another user's id is refused.
        #expect(try outbox.enqueue(first, idempotencyKey: nil) == .existing(first))
        var stolen = first
        stolen.userID = "mallory"
        #expect(throws: StoreError.self) { try outbox.enqueue(stolen, idempotencyKey: nil) }

        // Without a key, two writes are two rows.
        let a = OutboxFixture.entry(user: "alice", offset: 4)
        let b = OutboxFixture.entry(user: "alice", offset: 5)
        #expect(try outbox.enqueue(a, idempotencyKey: nil) == .inserted(a))
        #expect(try outbox.enqueue(b, idempotencyKey: nil) == .inserted(b))
        #expect(outbox.pendingCount == 4)
        #expect(try outbox.oldest(limit: 10).map(\.entry) == [first, bobs, a, b])

        // Once replayed (removed), the key is free in the outbox: the store answers for it from then on.
        let seq = try #require(try outbox.oldest(limit: 1).first?.seq)
        try outbox.remove(seq: seq)
        try outbox.remove(seq: seq)
        #expect(outbox.pendingCount == 3)
        #expect(try outbox.queued(user: "alice", idempotencyKey: "k1") == nil)
    }

    @Test func replaysEveryEntryOnceInOrderWhenTheStoreIsBack() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        var entries: [Entry] = []
        for i in 0..<500 {
            let entry = OutboxFixture.entry(user: "user-\(i % 5)", offset: Int64(i))
            _ = try fixture.outbox.enqueue(entry, idempotencyKey: i.isMultiple(of: 3) ? nil : "key-\(i)")
            entries.append(entry)
        }
        let replayer = fixture.replayer()

        fixture.store.set(.unavailable)
        let down = await replayer.flushOnce()
        #expect(down.replayed == 0 && down.remaining == 500)
        #expect(fixture.store.calls == 1)
        #expect(try fixture.gaugeValues().last == 500)

        fixture.store.heal()
        let up = await replayer.flushOnce()
        #expect(up.replayed == 500 && up.remaining == 0)
        #expect(fixture.outbox.pendingCount == 0)
        #expect(try fixture.outbox.oldest(limit: 1).isEmpty)

        // Replayed in queue order, each once, each a new row.
        let results = fixture.store.results
        #expect(results.map(\.entry.id) == entries.map(\.id))
        #expect(results.allSatisfy { if case .inserted = $0 { true } else { false } })
        for user in 0..<5 {
            let stored = try await fixture.base.recentEntries(user: "user-\(user)", limit: 1_000)
            #expect(stored.reversed() == entries.filter { $0.userID == "user-\(user)" })
        }

        // The gauge went to the backlog, then down to 0.
        let gauge = try fixture.gaugeValues()
        #expect(gauge.contains(500))
        #expect(gauge.last == 0)
        let fromBacklog = Array(gauge.drop(while: { $0 != 500 }))
        #expect(fromBacklog == fromBacklog.sorted(by: >))

        // Nothing left for the next start.
        let reopened = try Outbox(path: fixture.outboxPath, target: "test-database")
        defer { reopened.close() }
        #expect(reopened.pendingCount == 0)
    }

    @Test func aFailureStopsTheBatchAndKeepsTheOrder() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        let entries = (0..<10).map { OutboxFixture.entry(user: "alice", offset: Int64($0)) }
        for entry in entries { _ = try fixture.outbox.enqueue(entry, idempotencyKey: nil) }
        fixture.store.fail(id: entries[3].id)
        let replayer = fixture.replayer(batchSize: 4)

        let first = await replayer.flushOnce()
        #expect(first.replayed == 3 && first.remaining == 7)
        #expect(fixture.store.calls == 4)  // No later entry was tried.
        var queued = try fixture.outbox.oldest(limit: 100)
        #expect(queued.map(\.entry) == Array(entries[3...]))
        let failed = try #require(try fixture.outbox.attempts(seq: queued[0].seq))
        #expect(failed.count == 1)
        #expect(failed.lastError?.contains("fake outage") == true)
        for item in queued.dropFirst() { #expect(try fixture.outbox.attempts(seq: item.seq)?.count == 0) }

        let second = await replayer.flushOnce()
        #expect(second.replayed == 0 && second.remaining == 7)
        #expect(try fixture.outbox.attempts(seq: queued[0].seq)?.count == 2)

        fixture.store.heal()
        let third = await replayer.flushOnce()
        #expect(third.replayed == 7 && third.remaining == 0)
        queued = try fixture.outbox.oldest(limit: 100)
        #expect(queued.isEmpty)
        #expect(fixture.store.results.map(\.entry.id) == entries.map(\.id))
        #expect(try await fixture.base.recentEntries(user: "alice", limit: 100).reversed() == entries)
        #expect(try fixture.gaugeValues().last == 0)
    }

    @Test func replayingAnEntryTheStoreAlreadyHasRemovesIt() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        // A crash after the insert but before the remove: the store has it, the outbox still queues it.
        let crashed = OutboxFixture.entry(user: "alice", offset: 1)
        _ = try fixture.outbox.enqueue(crashed, idempotencyKey: "k1")
        #expect(try await fixture.base.insertEntry(crashed, idempotencyKey: "k1") == .inserted(crashed))
        // A retried request: the store already has an entry under its key, the queued one is a copy.
        let original = OutboxFixture.entry(user: "bob", offset: 2)
        #expect(try await fixture.base.insertEntry(original, idempotencyKey: "k2") == .inserted(original))
        let retried = OutboxFixture.entry(user: "bob", offset: 3)
        _ = try fixture.outbox.enqueue(retried, idempotencyKey: "k2")
        // A crash of a write without a key.
        let keyless = OutboxFixture.entry(user: "bob", offset: 4)
        _ = try fixture.outbox.enqueue(keyless, idempotencyKey: nil)
        _ = try await fixture.base.insertEntry(keyless, idempotencyKey: nil)

        let result = await fixture.replayer().flushOnce()
        #expect(result.replayed == 3 && result.remaining == 0)
        #expect(fixture.store.results == [.existing(crashed), .existing(original), .existing(keyless)])
        #expect(try await fixture.base.recentEntries(user: "alice", limit: 10) == [crashed])
        #expect(try await fixture.base.recentEntries(user: "bob", limit: 10) == [keyless, original])
    }

    @Test func runReplaysOnceTheStoreIsBackAndPublishesTheGauge() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        let entries = (0..<5).map { OutboxFixture.entry(user: "user-\($0 % 2)", offset: Int64($0)) }
        for entry in entries { _ = try fixture.outbox.enqueue(entry, idempotencyKey: nil) }
        fixture.store.set(.unavailable)
        let (group, finished, task) = startGroup(fixture.replayer(batchSize: 2))

        // The first pass fails, then the replayer backs off on the clock.
        try await eventually("a failed pass and a backoff") { fixture.store.calls >= 1 && fixture.clock.sleeperCount == 1 }
        #expect(fixture.outbox.pendingCount == 5)
        #expect(try fixture.gaugeValues().last == 5)

        // Back: the next pass replays every batch at once, without waiting between batches.
        fixture.store.heal()
        fixture.clock.advance(by: .seconds(5))
        try await eventually("the queue drained") { fixture.outbox.pendingCount == 0 }
        try await eventually("the gauge at 0") { try fixture.gaugeValues().last == 0 }
        #expect(fixture.store.results.map(\.entry.id) == entries.map(\.id))

        // New writes queued later are picked up on the next tick.
        let late = OutboxFixture.entry(user: "user-0", offset: 10)
        _ = try fixture.outbox.enqueue(late, idempotencyKey: nil)
        try await eventually("the idle wait") { fixture.clock.sleeperCount == 1 }
        fixture.clock.advance(by: .seconds(1))
        try await eventually("the late entry replayed") { fixture.outbox.pendingCount == 0 }
        #expect(try await fixture.base.entry(user: "user-0", id: late.id) == late)

        await group.triggerGracefulShutdown()
        try await eventually("the replayer to stop") { finished.isSet }
        try await task.value
    }

    @Test func gracefulShutdownLeavesWhatFailedOnDisk() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        let entries = (0..<5).map { OutboxFixture.entry(user: "alice", offset: Int64($0)) }
        for entry in entries { _ = try fixture.outbox.enqueue(entry, idempotencyKey: "k-\(entry.id)") }
        fixture.store.set(.unavailable)
        let (group, finished, task) = startGroup(fixture.replayer())

        try await eventually("a failed pass and a backoff") { fixture.store.calls >= 1 && fixture.clock.sleeperCount == 1 }
        let callsBefore = fixture.store.calls
        await group.triggerGracefulShutdown()
        try await eventually("the replayer to stop") { finished.isSet }
        try await task.value
        #expect(fixture.store.calls == callsBefore + 1)  // The final flush tried once.

        // Everything is still queued, in order, for the next start.
        fixture.outbox.close()
        let reopened = try Outbox(path: fixture.outboxPath, target: "test-database")
        defer { reopened.close() }
        #expect(reopened.pendingCount == 5)
        #expect(try reopened.oldest(limit: 10).map(\.entry) == entries)

        // The next start, with the store back, drains it.
        fixture.store.heal()
        let result = await fixture.replayer(outbox: reopened).flushOnce()
        #expect(result.replayed == 5 && result.remaining == 0)
        #expect(try await fixture.base.recentEntries(user: "alice", limit: 10).reversed() == entries)
        #expect(try fixture.gaugeValues().last == 0)
    }

    @Test func theShutdownFlushIsBoundedInTime() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        let entries = (0..<3).map { OutboxFixture.entry(user: "alice", offset: Int64($0)) }
        for entry in entries { _ = try fixture.outbox.enqueue(entry, idempotencyKey: nil) }
        fixture.store.set(.unavailable)
        let (group, finished, task) = startGroup(fixture.replayer())
        try await eventually("a failed pass and a backoff") { fixture.store.calls >= 1 && fixture.clock.sleeperCount == 1 }

        // The final flush meets a store call that never returns (and ignores cancellation).
        fixture.store.set(.hang)
        await group.triggerGracefulShutdown()
        try await eventually("the flush hanging and its deadline set") {
            fixture.store.hangingCount == 1 && fixture.clock.sleeperCount == 1
        }
        #expect(!finished.isSet)
        fixture.clock.advance(by: .seconds(5))
        try await eventually("the replayer to give up and stop") { finished.isSet }
        try await task.value
        #expect(fixture.outbox.pendingCount == 3)

        fixture.store.release()
        fixture.store.heal()
        let result = await fixture.replayer().flushOnce()
        #expect(result.replayed == 3 && result.remaining == 0)
        #expect(try await fixture.base.recentEntries(user: "alice", limit: 10).reversed() == entries)
    }

    @Test func aClosedOutboxFailsAsUnavailable() async throws {
        let fixture = try await OutboxFixture()
        defer { fixture.tearDown() }
        fixture.outbox.close()
        #expect(throws: StoreError(.unavailable, "the outbox at \(fixture.outboxPath) is closed")) {
            try fixture.outbox.enqueue(OutboxFixture.entry(user: "alice"), idempotencyKey: nil)
        }
        let result = await fixture.replayer().flushOnce()
        #expect(result.replayed == 0)
    }
}

@Suite struct OutboxErasureByTagTests {
    @Test func queuedWritesOfAUserKnownOnlyByTagAreDropped() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-tag-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let outbox = try Outbox(path: path, target: "test-database")
        defer { outbox.close() }
        for user in ["ada", "ada", "bo"] {
            _ = try outbox.enqueue(
                Entry(id: EntryID.generate(), userID: user, text: "t", createdAt: Date(), analysis: Array("{}".utf8), modelVersion: "m"),
                idempotencyKey: nil)
        }
        #expect(try outbox.deleteUser(tagged: UserTag("ada")) == 2)
        #expect(outbox.pendingCount == 1)
        #expect(try outbox.oldest(limit: 10).map(\.entry.userID) == ["bo"])
    }
}
