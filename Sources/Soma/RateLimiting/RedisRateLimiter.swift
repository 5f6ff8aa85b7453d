/// The per-user budget shared by every instance: one sliding-window log per user in Redis, checked
/// and spent by one atomic Lua script whose clock is Redis' `TIME` (so instances with skewed clocks
/// still share one window).
///
/// Same semantics as `SlidingWindowRateLimiter` (see `RateLimiter`): at most `requestsPerWindow`
/// units in any window of the tier's length, a batch costs its items, a refused request consumes
/// nothing. The log is a sorted set `soma:v1:rl:<usertag>` of one member per unit, scored by the
/// millisecond it was spent; it expires a window after its newest entry, so idle users cost nothing.
public final class RedisRateLimiter: Sendable {
    /// KEYS[1] the user's log; ARGV: limit, window ms, cost, a unique id for this request's members.
    /// Returns {allowed (0/1), remaining, reset ms, retry ms (-1 when none)}.
    static let script = RedisScript(
        """
        local key = KEYS[1]
        local limit = tonumber(ARGV[1])
        local window = tonumber(ARGV[2])
        local cost = tonumber(ARGV[3])
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
        local used = redis.call('ZCARD', key)
        local function reset()
          local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
          if oldest[2] then return tonumber(oldest[2]) + window - now end
          return window
        end
        if cost > limit then
          return {0, limit - used, reset(), -1}
        end
        if used + cost > limit then
          local index = used + cost - limit - 1
          local entry = redis.call('ZRANGE', key, index, index, 'WITHSCORES')
          return {0, limit - used, reset(), tonumber(entry[2]) + window - now}
        end
        for i = 1, cost do
          redis.call('ZADD', key, now, ARGV[4] .. ':' .. i)
        end
        redis.call('PEXPIRE', key, window)
        return {1, limit - used - cost, reset(), -1}
        """)

    private let client: RedisClient
    private let policy: TierPolicy

    public init(client: RedisClient, policy: TierPolicy) {
        self.client = client
        self.policy = policy
    }

    /// The Redis key of `user`'s log: by `UserTag`, so Redis holds no user id.
    static func key(_ user: String) -> String {
        "soma:v1:rl:" + UserTag(user).hex
    }

    /// Throws when Redis cannot answer (the resilient limiter falls back to the local one).
    public func acquire(user: String, tier: Tier, cost: Int) async throws(RedisError) -> RateLimitDecision {
        let limits = policy[tier]
        guard cost >= 1 else {
            return RateLimitDecision(allowed: false, limit: limits.requestsPerWindow, remaining: 0, resetAfter: .zero, reason: .invalidCost)
        }
        let windowMS = limits.window.components.seconds * 1000 + limits.window.components.attoseconds / 1_000_000_000_000_000
        var rng = SystemRandomNumberGenerator()
        let nonce = String(rng.next() as UInt64, radix: 36) + String(rng.next() as UInt64, radix: 36)
        let reply: RedisReply
        do {
            reply = try await client.evalScript(
                Self.script, keys: [.string(Self.key(user))],
                args: [
                    .integer(limits.requestsPerWindow), .integer(windowMS), .integer(cost), .string(nonce),
                ])
        } catch let error as RedisError {
            throw error
        } catch {
            throw RedisError(.io, "\(error)")
        }
        if let message = reply.errorMessage { throw RedisError(.protocol, message) }
        guard let values = reply.array?.compactMap(\.int), values.count == 4 else {
            throw RedisError(.protocol, "unexpected rate-limit reply \(reply)")
        }
        let allowed = values[0] == 1
        let retry: Duration? = values[3] >= 0 ? .milliseconds(max(1, values[3])) : nil
        return RateLimitDecision(
            allowed: allowed,
            limit: limits.requestsPerWindow,
            remaining: Int(max(0, values[1])),
            resetAfter: .milliseconds(max(0, values[2])),
            retryAfter: allowed ? nil : retry,
            reason: allowed ? nil : (cost > limits.requestsPerWindow ? .costExceedsLimit : .limitExceeded)
        )
    }
}

/// The shared limiter while Redis answers, the local one while it does not: no request fails
/// because Redis is down (the budget is then per instance until Redis returns).
public final class ResilientRateLimiter: RateLimiter {
    private let shared: RedisRateLimiter
    private let local: SlidingWindowRateLimiter
    private let breaker: CircuitBreaker
    private let metrics: SomaMetrics
    private let callTimeout: Duration?

    /// - Parameter callTimeout: the most one Redis call may take, the wait for a pooled connection
    ///   included (a hung Redis must not queue every request behind the pool); nil: the driver's bounds.
    public init(
        shared: RedisRateLimiter, local: SlidingWindowRateLimiter, breaker: CircuitBreaker, metrics: SomaMetrics,
        callTimeout: Duration? = nil
    ) {
        self.shared = shared
        self.local = local
        self.breaker = breaker
        self.metrics = metrics
        self.callTimeout = callTimeout
    }

    public func acquire(user: String, tier: Tier, cost: Int) async -> RateLimitDecision {
        do {
            // Within the request's Redis budget too; none left: the local limiter decides.
            let callTimeout = try RedisBudget.bound(for: callTimeout)
            return try await breaker.run { [shared] in
                try await boundedCall(within: callTimeout) { try await shared.acquire(user: user, tier: tier, cost: cost) }
            }
        } catch {
            metrics.increment(SomaMetrics.Name.rateLimitFallback)
            return local.acquireNow(user: user, tier: tier, cost: cost)
        }
    }
}
