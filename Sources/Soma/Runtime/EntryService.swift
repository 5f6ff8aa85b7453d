public import Foundation

/// Where entries are kept, said explicitly (never guessed from what is nil).
public enum EntryStorage: Sendable {
    /// The embedded SQLite store: local state, so there is nothing to fail over to.
    case embedded(any Store)
    /// PostgreSQL (behind its breaker) with this instance's durable outbox for the time it is
    /// unavailable; `OutboxReplayer` drains the outbox into the store.
    case remote(any Store, outbox: Outbox)

    public var store: any Store {
        switch self {
        case .embedded(let s), .remote(let s, _): s
        }
    }

    public var outbox: Outbox? {
        if case .remote(_, let outbox) = self { return outbox }
        return nil
    }

    public var kind: StoreKind {
        switch self {
        case .embedded: .sqlite
        case .remote: .postgres
        }
    }
}

/// A user's entries: analysis-then-store with the durability policy, listing, deleting and
/// erasing (docs/ARCHITECTURE.md §4, §5).
///
/// Durability: an entry is stored with its full analysis or not at all. With PostgreSQL, a write
/// the database cannot take (breaker open, timeout) goes to the outbox, fsync'd, and is answered
/// `queued`; while the outbox holds a backlog, new writes queue behind it so the database
/// receives writes in the order they were acknowledged; a retry with the same Idempotency-Key
/// during an outage answers as the first time. Every write and delete invalidates the user's
/// cached profile.
public struct EntryService: Sendable {
    /// How a write was persisted.
    public enum Persistence: String, Sendable {
        /// In the store (HTTP 201).
        case stored
        /// In the outbox, replayed once the store is back (HTTP 202).
        case queued
    }

    /// What a create did.
    public struct Write: Sendable {
        public var entry: Entry
        public var persisted: Persistence
        /// False when an earlier write with the same Idempotency-Key answered instead.
        public var inserted: Bool
    }

    /// What erasing a user removed, from every place their data lives.
    public struct Erasure: Sendable, Equatable {
        /// Stored and queued entries.
        public var entries: Int
        public var profiles: Int
        public var cacheEntries: Int
    }

    public let storage: EntryStorage
    let analysis: Analysis
    let cache: TieredCache
    let metrics: SomaMetrics
    let now: @Sendable () -> Date

    public init(storage: EntryStorage, analysis: Analysis, cache: TieredCache, metrics: SomaMetrics, now: @escaping @Sendable () -> Date = { Date() }) {
        self.storage = storage
        self.analysis = analysis
        self.cache = cache
        self.metrics = metrics
        self.now = now
    }

    /// Analyses `text` with every module and stores the entry. Throws `Refusal` when the budget is
    /// spent or the analysis could not finish completely (nothing is stored then), `StoreError`
    /// when neither the store nor the outbox could take it.
    public func create(text: String, idempotencyKey key: String?, caller: Caller, deadline: Duration) async throws -> Write {
        try await analysis.spend(caller, cost: 1)
        // The store must answer with time to spare for the outbox: a database that hangs (no error,
        // no answer) is given up on at this bound, and the write is queued instead of timing out.
        // The Idempotency-Key lookup comes before the analysis and is only an optimisation (the
        // insert and the replay check the key again), so it gets a quarter of the time at most.
        let remaining = deadline - analysis.deadline(in: .zero)
        let start = ContinuousClock.now
        let reserve = min(remaining / 5, .milliseconds(100))
        return try await CallDeadline.within(start + (remaining - reserve)) {
            try await create(text: text, key: key, caller: caller, deadline: deadline, lookupBound: start + remaining / 4)
        }
    }

    private func create(
        text: String, key: String?, caller: Caller, deadline: Duration, lookupBound: ContinuousClock.Instant
    ) async throws -> Write {
        if let key, let earlier = try await CallDeadline.within(lookupBound, { try await keyedWrite(user: caller.user, key: key) }) {
            // A retry answers as the first time, without analysing again; a different body under
            // the same key is the client's mistake, not a retry.
            try Self.checkSameBody(earlier.entry, text: text)
            return earlier
        }
        let outcome = try await analysis.run(text, modules: Module.allCases, caller: caller, deadline: deadline)
        switch outcome.degraded {
        case nil:
            break
        case .deadline:
            // The request's own deadline passed (in the queue or while modules ran): 504, as on
            // the analysis routes, whether or not the instance was busy.
            metrics.shed(tier: caller.tier)
            throw Refusal(.deadlineExceeded, "the analysis could not finish before the deadline; the entry was not stored")
        case .error:
            metrics.shed(tier: caller.tier)
            throw Refusal(.overloaded, "the analysis could not finish; the entry was not stored, retry later", retryAfter: .seconds(1))
        }
        let created = UnixMilliseconds.rounded(now())
        let entry = Entry(
            id: EntryID.generate(now: created), userID: caller.user, text: text, createdAt: created,
            analysis: outcome.resultsJSON(), modelVersion: analysis.modelVersion)
        let (result, persisted) = try await persist(entry, idempotencyKey: key, tier: caller.tier)
        if case .existing(let earlier) = result {
            // A concurrent write with the same key won the race.
            try Self.checkSameBody(earlier, text: text)
        }
        if case .inserted = result {
            metrics.increment(SomaMetrics.Name.entriesWritten, [("persisted", persisted.rawValue)])
            await cache.invalidateUser(caller.user)
        }
        return Write(entry: result.entry, persisted: persisted, inserted: result.isInserted)
    }

    /// The write already made under `key` by `user`: queued in the outbox or stored. A store that
    /// cannot answer (or not before the request's bound) is no reason to refuse the write: the insert
    /// below checks the key again, and so does the outbox's replay.
    private func keyedWrite(user: String, key: String) async throws -> Write? {
        if let outbox = storage.outbox, let queued = try outbox.queued(user: user, idempotencyKey: key) {
            return Write(entry: queued, persisted: .queued, inserted: false)
        }
        do {
            return try await storage.store.entry(user: user, idempotencyKey: key).map { Write(entry: $0, persisted: .stored, inserted: false) }
        } catch let error as StoreError where error.code == .unavailable {
            return nil
        }
    }

    /// Refuses a write whose text differs from the one first written under the same key (the
    /// text is the whole body, and it is kept with the entry, so exact bytes are compared).
    private static func checkSameBody(_ earlier: Entry, text: String) throws {
        guard earlier.text.utf8.elementsEqual(text.utf8) else {
            throw Refusal(.idempotencyKeyReused, "this Idempotency-Key was used for a different body; use a new key for a new entry")
        }
    }

    /// The durability policy (see the type's documentation).
    private func persist(_ entry: Entry, idempotencyKey key: String?, tier: Tier) async throws -> (EntryInsertResult, Persistence) {
        switch storage {
        case .embedded(let store):
            try await store.recordUser(entry.userID, tier: tier)
            return (try await store.insertEntry(entry, idempotencyKey: key), .stored)
        case .remote(let store, let outbox):
            if let key, let queued = try outbox.queued(user: entry.userID, idempotencyKey: key) {
                // The same write is already waiting in the outbox: answer as the first time.
                return (.existing(queued), .queued)
            }
            if outbox.pendingCount > 0 {
                // While a backlog drains, new writes queue behind it: the database receives every
                // instance's writes in the order they were acknowledged.
                return (try outbox.enqueue(entry, idempotencyKey: key), .queued)
            }
            do {
                try await store.recordUser(entry.userID, tier: tier)
                return (try await store.insertEntry(entry, idempotencyKey: key), .stored)
            } catch let error as StoreError where error.code == .unavailable {
                // The entry is durable in this instance's outbox and replayed in order once the
                // database answers.
                return (try outbox.enqueue(entry, idempotencyKey: key), .queued)
            }
        }
    }

    /// A page of the caller's stored entries, newest first.
    /// With a `deadline`, a database that does not answer by then reads as unavailable.
    public func list(caller: Caller, limit: Int, cursor: String?, deadline: Duration? = nil) async throws -> EntryPage {
        try await analysis.spend(caller, cost: 1)
        return try await analysis.bounded(by: deadline) { try await storage.store.entries(user: caller.user, limit: limit, cursor: cursor) }
    }

    /// Deletes one of the caller's entries; false when they have none with that id. With a
    /// `deadline`, a database that does not answer by then reads as unavailable.
    public func delete(caller: Caller, id: String, deadline: Duration? = nil) async throws -> Bool {
        try await analysis.spend(caller, cost: 1)
        guard try await analysis.bounded(by: deadline, { try await storage.store.deleteEntry(user: caller.user, id: id) }) else { return false }
        await cache.invalidateUser(caller.user)
        return true
    }

    /// Erases every trace of the caller: stored rows, queued writes (so a replay cannot bring them
    /// back), their cached profile and every analysis entry they produced or were served, in
    /// every cache layer of this instance and in Redis; the store's erasure log tells the other
    /// instances to purge theirs (`ErasureFollower`).
    public func erase(caller: Caller) async throws -> Erasure {
        try await analysis.spend(caller, cost: 1)
        let erased = try await storage.store.deleteUser(caller.user)
        let queued = try storage.outbox?.deleteUser(caller.user) ?? 0
        let cacheEntries = await cache.eraseUser(caller.user)
        return Erasure(entries: erased.entries + queued, profiles: erased.profiles, cacheEntries: cacheEntries)
    }
}

extension EntryInsertResult {
    var isInserted: Bool {
        if case .inserted = self { return true }
        return false
    }
}
