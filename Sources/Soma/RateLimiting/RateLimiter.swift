/// A per-user request budget: at most `requestsPerWindow` request units in any window of the tier's
/// length (docs/ARCHITECTURE.md §7).
///
/// The semantics every implementation keeps:
/// - a sliding window, not a fixed one: a request counts for exactly one window length after it was
///   admitted, so the 101st request inside any 60 s is refused, and the next one is admitted again
///   exactly when the oldest counted request leaves the window;
/// - a request costs `cost` units (a batch costs its number of items);
/// - a refused request consumes nothing;
/// - a cost above the tier's whole budget is refused outright (no wait would ever admit it).
///
/// The budget is per user, not per (user, tier): a user whose tier changes keeps the usage already
/// counted and is measured against the new tier's numbers.
///
/// `SlidingWindowRateLimiter` is the in-process implementation; a Redis-backed one shares the same
/// budget across instances behind this protocol, so the middleware does not know which it has.
public protocol RateLimiter: Sendable {
    /// Spends `cost` units of `user`'s budget if they fit, and says whether they did.
    func acquire(user: String, tier: Tier, cost: Int) async -> RateLimitDecision
}

extension RateLimiter {
    /// Spends one unit of `user`'s budget (a single request).
    public func acquire(user: String, tier: Tier) async -> RateLimitDecision {
        await acquire(user: user, tier: tier, cost: 1)
    }
}

/// The answer of a `RateLimiter`, with what the HTTP layer needs for `RateLimit-*` and `Retry-After`.
public struct RateLimitDecision: Sendable, Hashable {
    /// Why a request was refused.
    public enum Reason: Sendable, Hashable, CustomStringConvertible {
        /// The user's budget for the current window is spent; `retryAfter` says when enough frees.
        case limitExceeded
        /// The request costs more than the tier's whole budget (e.g. a batch with more items than
        /// the per-window limit); waiting never helps.
        case costExceedsLimit
        /// The cost is below 1; a request always costs at least one unit.
        case invalidCost

        public var description: String {
            switch self {
            case .limitExceeded: "rate limit exceeded: too many requests in the window"
            case .costExceedsLimit: "request cost exceeds the per-window limit of the tier"
            case .invalidCost: "request cost must be at least 1"
            }
        }
    }

    /// Whether the request was admitted (and its cost spent).
    public var allowed: Bool
    /// The tier's budget per window (`RateLimit-Limit`).
    public var limit: Int
    /// Units still available in the window after this decision (`RateLimit-Remaining`).
    public var remaining: Int
    /// Time until the window frees enough (`RateLimit-Reset`): after an admission, until the oldest
    /// counted request leaves the window (the next unit frees); after a refusal, until enough units
    /// free for the refused cost (`retryAfter`). Zero when nothing is counted.
    public var resetAfter: Duration
    /// When refused for the limit: the time after which the same request would be admitted
    /// (`Retry-After`). `nil` when allowed, and when no wait would admit it (`costExceedsLimit`,
    /// `invalidCost`).
    public var retryAfter: Duration?
    /// Why the request was refused; `nil` when allowed.
    public var reason: Reason?

    public init(
        allowed: Bool,
        limit: Int,
        remaining: Int,
        resetAfter: Duration,
        retryAfter: Duration? = nil,
        reason: Reason? = nil
    ) {
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.resetAfter = resetAfter
        self.retryAfter = retryAfter
        self.reason = reason
    }
}
