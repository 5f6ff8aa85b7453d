import Synchronization

/// The in-process `RateLimiter`: an exact sliding-window log per user.
///
/// Why a log and not counters: the contract is "at most N in *any* window", and that is exactly
/// what a log of admission times gives. A fixed window lets 2N through around a window boundary,
/// and the two-window approximation (weighting the previous window's count) is neither exact nor
/// able to say precisely when the next request fits. The log answers both: a request is admitted
/// while the units counted in the last `window` plus its cost stay within N, and when refused the
/// exact `retryAfter` is the instant the oldest entries that must leave have left.
///
/// Each user's log is a ring buffer of `(time, cost)` entries, so a batch is one entry and a log
/// holds at most N entries however it was spent; entries older than the window are dropped from the
/// front on each visit. Memory stays bounded without a background task: users whose newest entry is
/// older than the longest window of any tier (they are counted for nothing) are dropped by a sweep
/// that runs on an `acquire` once every `cleanupInterval`, or as soon as the map holds more than
/// `maxTrackedUsers` users. A user is never dropped while any of their requests still counts, so
/// pruning never loosens the limit: when every tracked user is active the map grows past the bound
/// (it is then bounded by the requests of the last window) and the next size-triggered sweep waits
/// until it has doubled, which keeps sweeps amortised O(1).
///
/// Shape: the state lives in a `Mutex` and `acquireNow` is one short critical section with no
/// allocation on the common path, so it is usable from synchronous code and benchmarks; the async
/// `acquire` of the protocol calls it. Time comes from an injected clock, read as the duration since
/// the limiter was made, so tests drive it with a manual clock and never sleep.
///
/// ```swift
/// let limiter = SlidingWindowRateLimiter()
/// let decision = limiter.acquireNow(user: "u1", tier: .free, cost: 3)
/// if !decision.allowed { /* 429, Retry-After: decision.retryAfter */ }
/// ```
public final class SlidingWindowRateLimiter: RateLimiter {
    /// Limits and memory bounds; every field has a default.
    public struct Configuration: Sendable {
        /// Per-tier budgets (`requestsPerWindow`, `window`).
        public var policy: TierPolicy
        /// Number of tracked users above which an `acquire` sweeps idle users at once.
        public var maxTrackedUsers: Int
        /// Longest time between two sweeps of idle users (each done by an `acquire`).
        public var cleanupInterval: Duration

        public init(
            policy: TierPolicy = TierPolicy(),
            maxTrackedUsers: Int = 100_000,
            cleanupInterval: Duration = .seconds(60)
        ) {
            precondition(maxTrackedUsers >= 1, "maxTrackedUsers must be at least 1")
            precondition(cleanupInterval > .zero, "cleanupInterval must be positive")
            self.policy = policy
            self.maxTrackedUsers = maxTrackedUsers
            self.cleanupInterval = cleanupInterval
        }
    }

    public let configuration: Configuration
    /// Time since the limiter was made, on the injected clock; log times are kept in this form so
    /// the state does not depend on the clock's `Instant` type.
    private let elapsed: @Sendable () -> Duration
    private let state: Mutex<State>

    /// - Parameter clock: the clock windows are measured on; tests pass a manual one.
    public init(configuration: Configuration = Configuration(), clock: any Clock<Duration> = ContinuousClock()) {
        self.configuration = configuration
        self.elapsed = Timeline(clock: clock).now
        self.state = Mutex(State(sweepThreshold: configuration.maxTrackedUsers))
    }

    /// A limiter with `policy` and default memory bounds.
    public convenience init(policy: TierPolicy, clock: any Clock<Duration> = ContinuousClock()) {
        self.init(configuration: Configuration(policy: policy), clock: clock)
    }

    public func acquire(user: String, tier: Tier, cost: Int) async -> RateLimitDecision {
        acquireNow(user: user, tier: tier, cost: cost)
    }

    /// The synchronous form of `acquire`: spends `cost` units of `user`'s budget if they fit.
    public func acquireNow(user: String, tier: Tier, cost: Int = 1) -> RateLimitDecision {
        let limits = configuration.policy[tier]
        let now = elapsed()
        return state.withLock { state in
            state.sweepIfDue(now: now, configuration: configuration)
            return state.acquire(user: user, cost: cost, limit: limits.requestsPerWindow, window: limits.window, now: now)
        }
    }

    /// Number of users whose usage is remembered now (idle ones included until the next sweep).
    public var trackedUserCount: Int { state.withLock { $0.users.count } }

    /// Drops every user with nothing counted in the longest window now, and returns how many were
    /// dropped. `acquire` does this by itself; this is for a periodic job or a test.
    @discardableResult
    public func pruneIdleUsers() -> Int {
        let now = elapsed()
        return state.withLock { $0.sweep(now: now, configuration: configuration) }
    }
}

extension SlidingWindowRateLimiter {
    /// Everything under the lock.
    private struct State {
        var users: [String: UsageLog] = [:]
        var lastSweep: Duration = .zero
        /// Map size above which the next `acquire` sweeps; at least `maxTrackedUsers`.
        var sweepThreshold: Int

        mutating func sweepIfDue(now: Duration, configuration: Configuration) {
            if users.count > sweepThreshold || now - lastSweep >= configuration.cleanupInterval {
                sweep(now: now, configuration: configuration)
            }
        }

        @discardableResult
        mutating func sweep(now: Duration, configuration: Configuration) -> Int {
            let window = configuration.policy.longestWindow
            let before = users.count
            users = users.filter { $0.value.newest + window > now }
            lastSweep = now
            sweepThreshold = max(configuration.maxTrackedUsers, users.count * 2)
            return before - users.count
        }

        mutating func acquire(user: String, cost: Int, limit: Int, window: Duration, now: Duration) -> RateLimitDecision {
            guard cost >= 1 else {
                return refusal(user: user, limit: limit, window: window, now: now, reason: .invalidCost)
            }
            guard cost <= limit else {
                return refusal(user: user, limit: limit, window: window, now: now, reason: .costExceedsLimit)
            }
            // Cost and limit are valid: from here the user's log is updated in place.
            return users[user, default: UsageLog()].acquire(cost: cost, limit: limit, window: window, now: now)
        }

        /// A refusal that no wait would turn into an admission; it reports the usage without
        /// creating state for an unknown user.
        private mutating func refusal(
            user: String, limit: Int, window: Duration, now: Duration, reason: RateLimitDecision.Reason
        ) -> RateLimitDecision {
            var used = 0
            var resetAfter = Duration.zero
            if users[user] != nil {
                users[user]!.expire(now: now, window: window)
                used = users[user]!.used
                resetAfter = users[user]!.timeUntilOldestLeaves(now: now, window: window)
            }
            return RateLimitDecision(
                allowed: false, limit: limit, remaining: max(0, limit - used), resetAfter: resetAfter,
                retryAfter: nil, reason: reason
            )
        }
    }

    /// One user's admitted requests in time order: a growable ring buffer of `(time, cost)`.
    ///
    /// Invariant: `used` is the sum of the costs held; entries are in non-decreasing time order.
    struct UsageLog {
        struct Entry {
            var time: Duration
            var cost: Int
        }

        private var storage: [Entry] = []
        private var head = 0
        private(set) var count = 0
        /// Units counted (sum of the held entries' costs).
        private(set) var used = 0
        /// Time of the newest admission ever recorded (kept after the entry expires, for sweeps).
        private(set) var newest: Duration = .zero

        init() {}

        private func slot(_ offset: Int) -> Int {
            let index = head + offset
            return index < storage.count ? index : index - storage.count
        }

        /// Drops the entries that have left the window: an entry admitted at `t` counts while
        /// `now < t + window`, so at `t + window` exactly it no longer does.
        mutating func expire(now: Duration, window: Duration) {
            while count > 0, storage[head].time + window <= now {
                used -= storage[head].cost
                head = slot(1)
                count -= 1
            }
            if count == 0 { head = 0 }
        }

        /// Time until the oldest counted entry leaves the window; zero when nothing is counted.
        func timeUntilOldestLeaves(now: Duration, window: Duration) -> Duration {
            count > 0 ? storage[head].time + window - now : .zero
        }

        /// Time until at most `target` units remain counted: the instant the newest entry that must
        /// leave for it has left.
        func timeUntilUsed(atMost target: Int, now: Duration, window: Duration) -> Duration {
            var remainingUsed = used
            var offset = 0
            while remainingUsed > target, offset < count {
                let entry = storage[slot(offset)]
                remainingUsed -= entry.cost
                if remainingUsed <= target { return entry.time + window - now }
                offset += 1
            }
            return .zero
        }

        mutating func append(time: Duration, cost: Int) {
            if count == storage.count { grow() }
            storage[slot(count)] = Entry(time: time, cost: cost)
            count += 1
            used += cost
            newest = max(newest, time)
        }

        /// Doubles the capacity and puts the entries back in order from index 0.
        private mutating func grow() {
            let capacity = max(4, storage.count * 2)
            var grown: [Entry] = []
            grown.reserveCapacity(capacity)
            for offset in 0..<count { grown.append(storage[slot(offset)]) }
            grown.append(contentsOf: repeatElement(Entry(time: .zero, cost: 0), count: capacity - count))
            storage = grown
            head = 0
        }

        mutating func acquire(cost: Int, limit: Int, window: Duration, now: Duration) -> RateLimitDecision {
            expire(now: now, window: window)
            guard used + cost <= limit else {
                let wait = timeUntilUsed(atMost: limit - cost, now: now, window: window)
                return RateLimitDecision(
                    allowed: false, limit: limit, remaining: max(0, limit - used), resetAfter: wait,
                    retryAfter: wait, reason: .limitExceeded
                )
            }
            append(time: now, cost: cost)
            return RateLimitDecision(
                allowed: true, limit: limit, remaining: limit - used,
                resetAfter: timeUntilOldestLeaves(now: now, window: window)
            )
        }
    }
}
