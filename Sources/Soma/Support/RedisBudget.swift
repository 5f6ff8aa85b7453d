/// The time one request may spend waiting on Redis, all its Redis calls together (the rate
/// limiter's script, cache lookups and fills, pending invalidations).
///
/// Each call is bounded by the Redis timeout, but a request makes several: against a hung Redis
/// (connections open, nothing answers) a request could wait one timeout per call before the
/// breaker opens, and again on every half-open trial. Inside `within(_:)` every call is also
/// bounded by what is left of the request's budget, and once it is spent the remaining calls are
/// not made at all (`RedisBudgetSpent`, which does not count against the breaker: Redis was not
/// asked) and their fallbacks answer (docs/ARCHITECTURE.md §4). Work outside a request (cache
/// warming, maintenance) has no budget: only the per-call timeout bounds it.
public enum RedisBudget {
    @TaskLocal public static var deadline: ContinuousClock.Instant?

    /// Runs `body` with at most `budget` of Redis waiting (or less, when an enclosing budget ends sooner).
    public static func within<T>(
        _ budget: Duration,
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> T
    ) async rethrows -> T {
        let end = ContinuousClock.now + budget
        return try await $deadline.withValue(deadline.map { min($0, end) } ?? end, operation: body, isolation: isolation)
    }

    /// The bound for one Redis call of at most `timeout`: the sooner of the two. Throws
    /// `RedisBudgetSpent` when nothing of the budget is left.
    static func bound(for timeout: Duration?) throws(RedisBudgetSpent) -> Duration? {
        guard let deadline else { return timeout }
        let left = deadline - ContinuousClock.now
        guard left > .zero else { throw RedisBudgetSpent() }
        return timeout.map { min($0, left) } ?? left
    }
}

/// The request has spent its Redis budget: the call was not made.
public struct RedisBudgetSpent: Error, CustomStringConvertible {
    public var description: String { "the request's Redis budget is spent; the call was not made" }
}
