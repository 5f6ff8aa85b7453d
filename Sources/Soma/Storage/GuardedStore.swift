import Synchronization

/// A remote store behind its circuit breaker: every call goes through `breaker.run`, an open
/// breaker reads as `StoreError(.unavailable)` (what the HTTP layer turns into the outbox or a 503),
/// and the schema is migrated on the first call that reaches the database if it could not be at
/// start-up (an instance starts even while PostgreSQL is down).
public final class GuardedStore: Store {
    public let base: any Store
    public let breaker: CircuitBreaker
    private let migrated = Mutex(false)

    public init(_ base: any Store, breaker: CircuitBreaker) {
        self.base = base
        self.breaker = breaker
    }

    /// Only unavailability counts against the breaker: a bad cursor or a refused value is the
    /// caller's problem, not the database's, and must not open it. A call made under a
    /// `CallDeadline` that has not answered by then is unavailability too (a hung database).
    private func call<T: Sendable>(_ body: @escaping @Sendable (any Store) async throws -> T) async throws -> T {
        let work: @Sendable () async throws -> T = { [self] in
            if !migrated.withLock({ $0 }) {
                try await base.migrate()
                migrated.withLock { $0 = true }
            }
            return try await body(base)
        }
        let bound = CallDeadline.current
        let outcome: Result<T, any Error>
        do {
            outcome = try await breaker.run { () async throws -> Result<T, any Error> in
                do {
                    guard let bound else { return .success(try await work()) }
                    return .success(try await boundedCall(by: bound, work))
                } catch let error as StoreError where error.code != .unavailable {
                    return .failure(error)
                } catch let late as CallDeadlineExceeded {
                    throw StoreError(.unavailable, "\(late)")
                }
            }
        } catch let open as CircuitBreakerOpenError {
            throw StoreError(.unavailable, "\(open)")
        }
        return try outcome.get()
    }

    public func migrate() async throws {
        try await call { _ in }
    }

    public func recordUser(_ userID: String, tier: Tier) async throws {
        try await call { try await $0.recordUser(userID, tier: tier) }
    }

    public func insertEntry(_ entry: Entry, idempotencyKey: String?) async throws -> EntryInsertResult {
        try await call { try await $0.insertEntry(entry, idempotencyKey: idempotencyKey) }
    }

    public func entries(user: String, limit: Int, cursor: String?) async throws -> EntryPage {
        try await call { try await $0.entries(user: user, limit: limit, cursor: cursor) }
    }

    public func entry(user: String, id: String) async throws -> Entry? {
        try await call { try await $0.entry(user: user, id: id) }
    }

    public func entry(user: String, idempotencyKey: String) async throws -> Entry? {
        try await call { try await $0.entry(user: user, idempotencyKey: idempotencyKey) }
    }

    public func deleteEntry(user: String, id: String) async throws -> Bool {
        try await call { try await $0.deleteEntry(user: user, id: id) }
    }

    public func recentEntries(user: String, limit: Int) async throws -> [Entry] {
        try await call { try await $0.recentEntries(user: user, limit: limit) }
    }

    public func mostActiveUsers(limit: Int) async throws -> [String] {
        try await call { try await $0.mostActiveUsers(limit: limit) }
    }

    public func profile(user: String) async throws -> ProfileSnapshot? {
        try await call { try await $0.profile(user: user) }
    }

    public func saveProfile(_ profile: ProfileSnapshot) async throws {
        try await call { try await $0.saveProfile(profile) }
    }

    public func erasures(after id: Int64, limit: Int) async throws -> [ErasureNotice] {
        try await call { try await $0.erasures(after: id, limit: limit) }
    }

    public func deleteUser(_ userID: String) async throws -> UserErasure {
        try await call { try await $0.deleteUser(userID) }
    }

    public func identity() async throws -> DatabaseIdentity? {
        try await call { try await $0.identity() }
    }

    /// A failed health check counts as a failed call: probes alone can open the breaker.
    public func isHealthy() async -> Bool {
        (try? await call { store in
            guard await store.isHealthy() else { throw StoreError(.unavailable, "health check failed") }
            return true
        }) ?? false
    }
}
