import Foundation
import Logging
import Soma
import Synchronization
import Testing

/// A store that can be taken down: while down every call fails as PostgreSQL behind an open
/// breaker does (`StoreError(.unavailable)`). It records the entry ids that reached it, in the
/// order they arrived.
private final class SwitchableStore: Store {
    let base: SQLiteStore
    private let state = Mutex<(down: Bool, hung: Bool, arrivals: [String])>((false, false, []))

    init() throws { base = try SQLiteStore(path: SQLiteStore.inMemoryPath) }

    func setDown(_ down: Bool) { state.withLock { $0.down = down } }
    /// While hung, every call waits (as on a paused database: no error, no answer) until released
    /// or cancelled; then it goes on as usual.
    func setHung(_ hung: Bool) { state.withLock { $0.hung = hung } }
    var arrivals: [String] { state.withLock { $0.arrivals } }

    private func check() async throws {
        while state.withLock({ $0.hung }) { try await Task.sleep(for: .milliseconds(5)) }
        if state.withLock({ $0.down }) { throw StoreError(.unavailable, "store down (test)") }
    }

    func migrate() async throws { try await check(); try await base.migrate() }
    func recordUser(_ userID: String, tier: Tier) async throws { try await check(); try await base.recordUser(userID, tier: tier) }
    func insertEntry(_ entry: Entry, idempotencyKey: String?) async throws -> EntryInsertResult {
        try await check()
        let result = try await base.insertEntry(entry, idempotencyKey: idempotencyKey)
        state.withLock { $0.arrivals.append(entry.id) }
        return result
    }
    func entries(user: String, limit: Int, cursor: String?) async throws -> EntryPage {
        try await check()
        return try await base.entries(user: user, limit: limit, cursor: cursor)
    }
    func entry(user: String, id: String) async throws -> Entry? { try await check(); return try await base.entry(user: user, id: id) }
    func erasures(after id: Int64, limit: Int) async throws -> [ErasureNotice] {
        try await check()
        return try await base.erasures(after: id, limit: limit)
    }
    func entry(user: String, idempotencyKey: String) async throws -> Entry? {
        try await check()
        return try await base.entry(user: user, idempotencyKey: idempotencyKey)
    }
    func deleteEntry(user: String, id: String) async throws -> Bool { try await check(); return try await base.deleteEntry(user: user, id: id) }
    func recentEntries(user: String, limit: Int) async throws -> [Entry] { try await check(); return try await base.recentEntries(user: user, limit: limit) }
    func mostActiveUsers(limit: Int) async throws -> [String] { try await check(); return try await base.mostActiveUsers(limit: limit) }
    func profile(user: String) async throws -> ProfileSnapshot? { try await check(); return try await base.profile(user: user) }
    func saveProfile(_ profile: ProfileSnapshot) async throws { try await check(); try await base.saveProfile(profile) }
    func deleteUser(_ userID: String) async throws -> UserErasure { try await check(); return try await base.deleteUser(userID) }
    func isHealthy() async -> Bool { !state.withLock { $0.down } }
}

/// EntryService against in-process parts: the fixture models, an L1-only cache, the local rate
/// limiter, a switchable store and a real outbox file. Every failover path, no HTTP.
private struct Harness {
    let store: SwitchableStore
    let outbox: Outbox
    let service: EntryService
    let cache: TieredCache
    let analysis: Analysis
    let directory: URL

    init(remote: Bool = true, requestsPerWindow: Int = 1000, guarded: Bool = false) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("soma-entries-\(UUID().uuidString)", isDirectory: true)
        store = try SwitchableStore()
        try await store.migrate()
        outbox = try Outbox(path: directory.appendingPathComponent("outbox.sqlite").path, target: "test-database")
        let metrics = SomaMetrics()
        let catalog = try ModelCatalog(models: Fixtures.modelSet)
        let registry = ModelRegistry(loader: { try catalog.load($0) })
        for module in Module.allCases { try await registry.load(module) }
        cache = TieredCache(l1: L1Cache(), metrics: metrics)
        var tiers = TierPolicy.default
        for tier in Tier.allCases { tiers[tier].requestsPerWindow = requestsPerWindow }
        let service = AnalysisService(catalog: catalog, registry: registry, sessions: SessionManager(), cache: cache, metrics: metrics)
        analysis = Analysis(service: service, limiter: SlidingWindowRateLimiter(policy: tiers), tiers: tiers, metrics: metrics)
        // Guarded: behind a breaker as PostgreSQL is in production (GuardedStore), so calls honour
        // the request's CallDeadline.
        let front: any Store = guarded ? GuardedStore(store, breaker: CircuitBreaker(name: "test-db")) : store
        self.service = EntryService(
            storage: remote ? .remote(front, outbox: outbox) : .embedded(front), analysis: analysis, cache: cache, metrics: metrics)
    }

    /// Far enough that a busy machine (the whole suite runs in parallel on two cores) never turns
    /// these into deadline tests; `anIncompleteAnalysisStoresNothing` is the one about deadlines.
    var deadline: Duration { analysis.deadline(in: .seconds(3600)) }

    func create(_ text: String, key: String? = nil, user: String = "ada") async throws -> EntryService.Write {
        try await service.create(text: text, idempotencyKey: key, caller: Caller(user: user, tier: .standard), deadline: deadline)
    }

    /// Replays the outbox into the store as the running instance would.
    func replay() async -> (replayed: Int, remaining: Int) {
        await OutboxReplayer(outbox: outbox, store: store, breaker: nil, metrics: SomaMetrics(), logger: .init(label: "test")).flushOnce()
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

@Suite(.timeLimit(.minutes(1))) struct EntryServiceTests {
    @Test func storeUpStoresAndInvalidatesTheProfile() async throws {
        let h = try await Harness()
        defer { h.remove() }
        await h.cache.setUser(CacheKey.user("ada", "profile"), Array("{}".utf8))
        let write = try await h.create("I finally finished the garden and I am proud of it.")
        #expect(write.persisted == .stored)
        #expect(write.inserted)
        #expect(h.outbox.pendingCount == 0)
        #expect(h.store.arrivals == [write.entry.id])
        #expect(try await h.store.base.entry(user: "ada", id: write.entry.id)?.analysis == write.entry.analysis)
        #expect(await h.cache.getUser(CacheKey.user("ada", "profile")) == nil, "a new entry must invalidate the cached profile")
    }

    @Test func aHungStoreIsGivenUpOnWithinTheDeadlineAndTheWriteQueued() async throws {
        let h = try await Harness(guarded: true)
        defer { h.remove() }
        h.store.setHung(true)
        defer { h.store.setHung(false) }
        // With an idempotency key, so the keyed lookup (a store read) hangs first, then the insert.
        // The deadline leaves the analysis ample time on a busy machine (the suite runs in
        // parallel); without the bound the call would wait for the store until the time limit.
        let write = try await h.service.create(
            text: "The database froze while I was writing this.", idempotencyKey: "hung-1",
            caller: Caller(user: "ada", tier: .standard), deadline: h.analysis.deadline(in: .seconds(3)))
        #expect(write.persisted == .queued, "a store that hangs must not hold the write past its deadline")
        #expect(h.outbox.pendingCount == 1)
        h.store.setHung(false)
        #expect(await h.replay() == (1, 0))
        let page = try await h.store.base.entries(user: "ada", limit: 10, cursor: nil)
        #expect(page.entries.map(\.id) == [write.entry.id], "stored exactly once after the replay")
    }

    /// Reads and deletes against a hung store answer unavailable (503) at the request's deadline;
    /// without the bound they would wait for the store until the suite's time limit.
    @Test func readsOfAHungStoreAreGivenUpOnAtTheDeadline() async throws {
        let h = try await Harness(guarded: true)
        defer { h.remove() }
        let caller = Caller(user: "ada", tier: .standard)
        h.store.setHung(true)
        defer { h.store.setHung(false) }
        for attempt in 0..<3 {
            let listing = await #expect(throws: StoreError.self) {
                try await h.service.list(caller: caller, limit: 10, cursor: nil, deadline: h.analysis.deadline(in: .milliseconds(200)))
            }
            #expect(listing?.code == .unavailable, "attempt \(attempt)")
            let deletion = await #expect(throws: StoreError.self) {
                try await h.service.delete(caller: caller, id: "nope", deadline: h.analysis.deadline(in: .milliseconds(200)))
            }
            #expect(deletion?.code == .unavailable)
        }
    }

    @Test func storeDownQueuesDurably() async throws {
        let h = try await Harness()
        defer { h.remove() }
        h.store.setDown(true)
        let write = try await h.create("The train was late again and I missed the meeting.")
        #expect(write.persisted == .queued)
        #expect(h.outbox.pendingCount == 1)
        #expect(h.store.arrivals.isEmpty)
        // Queued is durable: a new outbox on the same file still holds it.
        let reopened = try Outbox(path: h.outbox.path, target: "test-database")
        #expect(try reopened.oldest(limit: 10).map(\.entry.id) == [write.entry.id])
        reopened.close()
    }

    @Test func embeddedStoreHasNoFailover() async throws {
        let h = try await Harness(remote: false)
        defer { h.remove() }
        h.store.setDown(true)
        await #expect(throws: StoreError.self) { try await h.create("Nothing to fall back to here.") }
        #expect(h.outbox.pendingCount == 0)
    }

    @Test func backlogQueuesNewWritesBehindItInAcknowledgementOrder() async throws {
        let h = try await Harness()
        defer { h.remove() }
        h.store.setDown(true)
        let first = try await h.create("First, written while the database was down.")
        h.store.setDown(false)
        // The store answers again, but the backlog has not drained: the new write queues behind it.
        let second = try await h.create("Second, written once it was back.", user: "grace")
        #expect(second.persisted == .queued)
        #expect(h.store.arrivals.isEmpty, "nothing may overtake the backlog")
        #expect(h.outbox.pendingCount == 2)
        let pass = await h.replay()
        #expect(pass.remaining == 0)
        // The order the store received them in, recorded by the store itself.
        #expect(h.store.arrivals == [first.entry.id, second.entry.id])
        let third = try await h.create("Third, after the backlog drained.")
        #expect(third.persisted == .stored)
    }

    @Test func sameIdempotencyKeyDuringAnOutageAnswersAsTheFirstTime() async throws {
        let h = try await Harness()
        defer { h.remove() }
        h.store.setDown(true)
        let first = try await h.create("I will only be stored once.", key: "key-1")
        let retry = try await h.create("I will only be stored once.", key: "key-1")
        #expect(first.inserted && !retry.inserted)
        #expect(retry.persisted == .queued)
        #expect(retry.entry.id == first.entry.id)
        #expect(h.outbox.pendingCount == 1)
        // Another user's identical key is their own write.
        let other = try await h.create("I will only be stored once.", key: "key-1", user: "grace")
        #expect(other.inserted && other.entry.id != first.entry.id)
        h.store.setDown(false)
        _ = await h.replay()
        // After the replay the store answers the retry, still with the first entry.
        let late = try await h.create("I will only be stored once.", key: "key-1")
        #expect(!late.inserted && late.persisted == .stored && late.entry.id == first.entry.id)
    }

    @Test func eraseReachesQueuedEntriesSoNoReplayBringsThemBack() async throws {
        let h = try await Harness()
        defer { h.remove() }
        let stored = try await h.create("Stored before the outage.")
        h.store.setDown(true)
        _ = try await h.create("Queued during the outage.")
        _ = try await h.create("Queued as well.")
        _ = try await h.create("Someone else's queued entry.", user: "grace")
        h.store.setDown(false)
        await h.cache.setUser(CacheKey.user("ada", "profile"), Array("{}".utf8))
        let erased = try await h.service.erase(caller: Caller(user: "ada", tier: .standard))
        #expect(erased.entries == 3)
        // The profile and the five analyses of each of her three texts; grace's stay.
        #expect(erased.cacheEntries == 16)
        #expect(await analysed("Someone else's queued entry.", h))
        #expect(await !analysed("Queued as well.", h))
        #expect(h.outbox.pendingCount == 1)
        _ = await h.replay()
        #expect(try await h.store.base.entries(user: "ada", limit: 10, cursor: nil).entries.isEmpty)
        #expect(try await h.store.base.entry(user: "ada", id: stored.entry.id) == nil)
        #expect(try await h.store.base.entries(user: "grace", limit: 10, cursor: nil).entries.count == 1)
    }

    @Test func anIncompleteAnalysisStoresNothing() async throws {
        let h = try await Harness()
        defer { h.remove() }
        // A deadline already passed: the service can only give the degraded basic answer.
        await #expect(throws: Refusal.self) {
            _ = try await h.service.create(
                text: "Too late to analyse fully.", idempotencyKey: nil, caller: Caller(user: "ada", tier: .standard), deadline: h.analysis.deadline(in: .zero))
        }
        #expect(h.store.arrivals.isEmpty && h.outbox.pendingCount == 0)
    }

    @Test func spentBudgetRefusesAndTheLedgerSaysSo() async throws {
        let h = try await Harness(requestsPerWindow: 1)
        defer { h.remove() }
        _ = try await h.create("One is allowed.")
        let caller = Caller(user: "ada", tier: .standard)
        do {
            _ = try await h.service.create(text: "Two is not.", idempotencyKey: nil, caller: caller, deadline: h.deadline)
            Issue.record("the second write should be refused")
        } catch let refusal as Refusal {
            #expect(refusal.kind == .rateLimited)
        }
        #expect(caller.ledger.recorded?.allowed == false)
        #expect(h.store.arrivals.count == 1)
    }

    /// Whether any module's result for `text` is in the cache, i.e. whether it was analysed.
    private func analysed(_ text: String, _ h: Harness) async -> Bool {
        let keys = Module.allCases.map { h.analysis.service.cacheKey($0, normalized: TextNormalizer.normalize(text), user: "ada") }
        return await h.cache.get(keys).contains { $0 != nil }
    }

    @Test(arguments: [false, true])
    func aKeyReusedForADifferentBodyIs422AndNothingIsAnalysed(storeDown: Bool) async throws {
        let h = try await Harness()
        defer { h.remove() }
        h.store.setDown(storeDown)
        let first = try await h.create("The first body under this key.", key: "k-1")
        #expect(first.persisted == (storeDown ? .queued : .stored))
        let other = "A different body under the same key."
        await #expect(throws: Refusal(.idempotencyKeyReused, "this Idempotency-Key was used for a different body; use a new key for a new entry")) {
            try await h.create(other, key: "k-1")
        }
        #expect(await !analysed(other, h), "a refused write must not be analysed")
        // The same body is a retry: the first entry, not analysed or stored again.
        let retry = try await h.create("The first body under this key.", key: "k-1")
        #expect(retry.entry.id == first.entry.id)
        #expect(!retry.inserted)
        #expect(retry.persisted == first.persisted)
        // The key is per user: another user may use it for any body.
        #expect(try await h.create(other, key: "k-1", user: "grace").inserted)
    }

}
