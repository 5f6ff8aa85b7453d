import Foundation
import Soma
import Testing

/// `RedisRateLimiter` (the Lua sliding-window log) and `ResilientRateLimiter` against real
/// redis-server processes. Tests that flush scripts, list keys or stop the server get a private
/// server; the rest share one and use users unique to the run.
@Suite("RedisRateLimiter", .requiresRedis, .timeLimit(.minutes(2)))
struct RedisRateLimiterTests {
    /// The tier every test uses.
    static let tier = Tier.free

    /// A policy whose free tier allows `limit` units per `window`.
    static func policy(limit: Int = 5, window: Duration = .seconds(10)) -> TierPolicy {
        var policy = TierPolicy()
        policy[tier] = TierLimits(requestsPerWindow: limit, window: window, maxInFlightPerUser: 2, maxTextBytes: 1024, maxBatchItems: 64)
        return policy
    }

    static func client(_ server: RedisHarness, poolSize: Int = 4, timeout: Duration = .seconds(1)) throws -> RedisClient {
        try RedisClient(url: server.url, poolSize: poolSize, connectTimeout: timeout, commandTimeout: timeout)
    }

    /// A limiter over its own client of `server` (one "instance").
    static func limiter(_ server: RedisHarness, policy: TierPolicy = Self.policy(), poolSize: Int = 4) throws -> (RedisRateLimiter, RedisClient) {
        let client = try client(server, poolSize: poolSize)
        return (RedisRateLimiter(client: client, policy: policy), client)
    }

    /// A user id unique to this test and run.
    static func user(_ name: String = #function) -> String {
        "rl-" + RedisHarness.keyPrefix(name).dropFirst(3).dropLast().replacingOccurrences(of: ":", with: "-")
    }

    /// Runs `body` with a private server, shut down afterwards whatever happens.
    static func withPrivateServer(_ body: (RedisHarness) async throws -> Void) async throws {
        let server = try await RedisHarness.start()
        do {
            try await body(server)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    /// Spends `count` single units and returns the decisions.
    static func spend(_ limiter: RedisRateLimiter, _ user: String, _ count: Int) async throws -> [RateLimitDecision] {
        var decisions: [RateLimitDecision] = []
        for _ in 0..<count { decisions.append(try await limiter.acquire(user: user, tier: tier, cost: 1)) }
        return decisions
    }

    // MARK: - Budget

    @Test func admitsExactlyTheLimitThenRefusesWithRetryAfter() async throws {
        let (limiter, client) = try Self.limiter(try await RedisHarness.shared())
        defer { client.close() }
        let user = Self.user()

        let admitted = try await Self.spend(limiter, user, 5)
        #expect(admitted.map(\.allowed) == Array(repeating: true, count: 5))
        #expect(admitted.map(\.remaining) == [4, 3, 2, 1, 0])
        #expect(admitted.allSatisfy { $0.limit == 5 && $0.retryAfter == nil && $0.reason == nil })
        #expect(admitted.allSatisfy { $0.resetAfter > .zero && $0.resetAfter <= .seconds(10) }, "\(admitted.map(\.resetAfter))")

        let refused = try await limiter.acquire(user: user, tier: Self.tier, cost: 1)
        #expect(!refused.allowed)
        #expect(refused.reason == .limitExceeded)
        #expect(refused.remaining == 0 && refused.limit == 5)
        let retryAfter = try #require(refused.retryAfter)
        #expect(retryAfter > .zero && retryAfter <= .seconds(10), "retryAfter \(retryAfter)")
        #expect(refused.resetAfter > .zero && refused.resetAfter <= .seconds(10))
    }

    @Test func aRefusedRequestConsumesNothing() async throws {
        let window: Duration = .seconds(6)  // generous: the whole suite may load the machine
        let (limiter, client) = try Self.limiter(try await RedisHarness.shared(), policy: Self.policy(limit: 5, window: window))
        defer { client.close() }
        let user = Self.user()
        let clock = ContinuousClock()

        // The whole budget in one batch, spent at one instant between `before` and `after`.
        let before = clock.now
        #expect(try await limiter.acquire(user: user, tier: Self.tier, cost: 5).allowed)
        let after = clock.now

        // Refusals over the first half of the window (the batch counts until `before + window` at
        // the earliest): had they been counted, the later ones would still be in the window when
        // the batch has left.
        var refusals = 0
        repeat {
            let refused = try await limiter.acquire(user: user, tier: Self.tier, cost: 1)
            #expect(!refused.allowed && refused.reason == .limitExceeded, "\(refused)")
            refusals += 1
            try await Task.sleep(for: .milliseconds(100))
        } while clock.now < before + window / 2
        #expect(refusals >= 2)
        #expect(try await client.command(["ZCARD", .string("soma:v1:rl:" + UserTag(user).hex)]).int == 5, "only admitted units are logged")

        // Just over a window after the batch: all of it is free again.
        try await clock.sleep(until: after + window + .milliseconds(100))
        let batch = try await limiter.acquire(user: user, tier: Self.tier, cost: 5)
        #expect(batch.allowed, "the whole budget is free once the batch left: \(batch)")
        #expect(batch.remaining == 0)
    }

    @Test func aBatchCostsItsItems() async throws {
        let (limiter, client) = try Self.limiter(try await RedisHarness.shared())
        defer { client.close() }
        let user = Self.user()
        let three = try await limiter.acquire(user: user, tier: Self.tier, cost: 3)
        #expect(three.allowed && three.remaining == 2)

        let tooMany = try await limiter.acquire(user: user, tier: Self.tier, cost: 3)
        #expect(!tooMany.allowed)
        #expect(tooMany.reason == .limitExceeded)
        #expect(tooMany.remaining == 2, "a refusal reports what is left, and spends none of it")
        #expect(tooMany.retryAfter.map { $0 > .zero && $0 <= .seconds(10) } == true)

        let two = try await limiter.acquire(user: user, tier: Self.tier, cost: 2)
        #expect(two.allowed && two.remaining == 0)
        #expect(try await limiter.acquire(user: user, tier: Self.tier, cost: 1).allowed == false)
    }

    @Test func aCostAboveTheWholeLimitIsNeverAdmitted() async throws {
        let (limiter, client) = try Self.limiter(try await RedisHarness.shared())
        defer { client.close() }
        let user = Self.user()

        let fresh = try await limiter.acquire(user: user, tier: Self.tier, cost: 6)
        #expect(!fresh.allowed)
        #expect(fresh.reason == .costExceedsLimit)
        #expect(fresh.retryAfter == nil, "no wait would admit it")
        #expect(fresh.remaining == 5 && fresh.limit == 5)

        #expect(try await Self.spend(limiter, user, 2).map(\.remaining) == [4, 3], "the refusal spent nothing")
        let later = try await limiter.acquire(user: user, tier: Self.tier, cost: 100)
        #expect(!later.allowed && later.reason == .costExceedsLimit && later.retryAfter == nil)
        #expect(later.remaining == 3)
    }

    @Test func aCostBelowOneIsInvalid() async throws {
        let (limiter, client) = try Self.limiter(try await RedisHarness.shared())
        defer { client.close() }
        let user = Self.user()
        for cost in [0, -1] {
            let decision = try await limiter.acquire(user: user, tier: Self.tier, cost: cost)
            #expect(!decision.allowed)
            #expect(decision.reason == .invalidCost)
            #expect(decision.retryAfter == nil)
        }
        #expect(try await limiter.acquire(user: user, tier: Self.tier, cost: 1).remaining == 4, "nothing was spent")
    }

    // MARK: - Sharing and atomicity

    @Test func twoInstancesShareOneBudget() async throws {
        let server = try await RedisHarness.shared()
        let (a, clientA) = try Self.limiter(server)
        let (b, clientB) = try Self.limiter(server)
        defer { clientA.close(); clientB.close() }
        let user = Self.user()

        var remaining: [Int] = []
        for i in 0..<5 {
            let decision = try await (i.isMultiple(of: 2) ? a : b).acquire(user: user, tier: Self.tier, cost: 1)
            #expect(decision.allowed)
            remaining.append(decision.remaining)
        }
        #expect(remaining == [4, 3, 2, 1, 0])
        #expect(try await a.acquire(user: user, tier: Self.tier, cost: 1).allowed == false)
        #expect(try await b.acquire(user: user, tier: Self.tier, cost: 1).allowed == false)
    }

    @Test func concurrentAcquiresNeverOvershoot() async throws {
        let server = try await RedisHarness.shared()
        let (a, clientA) = try Self.limiter(server)
        let (b, clientB) = try Self.limiter(server)
        defer { clientA.close(); clientB.close() }

        for round in 0..<3 {
            let user = Self.user() + "-\(round)"
            let decisions = try await withThrowingTaskGroup(of: RateLimitDecision.self, returning: [RateLimitDecision].self) { group in
                for i in 0..<10 {
                    group.addTask { try await (i.isMultiple(of: 2) ? a : b).acquire(user: user, tier: Self.tier, cost: 1) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let admitted = decisions.filter(\.allowed)
            #expect(admitted.count == 5, "round \(round): \(decisions.map(\.allowed))")
            #expect(admitted.map(\.remaining).sorted() == [0, 1, 2, 3, 4], "each admission saw the ones before it")
            #expect(decisions.filter { !$0.allowed }.allSatisfy { $0.reason == .limitExceeded })
        }

        // Batches too: 10 concurrent batches of 2 against 5 units admit exactly 2.
        let user = Self.user() + "-batches"
        let batches = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
            for i in 0..<10 {
                group.addTask { try await (i.isMultiple(of: 2) ? a : b).acquire(user: user, tier: Self.tier, cost: 2).allowed }
            }
            return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
        }
        #expect(batches == 2)
    }

    // MARK: - The sliding window

    @Test func theWindowSlides() async throws {
        let window: Duration = .seconds(6)  // generous: the whole suite may load the machine
        let (limiter, client) = try Self.limiter(try await RedisHarness.shared(), policy: Self.policy(limit: 5, window: window))
        defer { client.close() }
        let user = Self.user()

        let first = try await limiter.acquire(user: user, tier: Self.tier, cost: 3)
        #expect(first.allowed && first.remaining == 2)
        try await Task.sleep(for: window / 2)
        let second = try await limiter.acquire(user: user, tier: Self.tier, cost: 2)
        #expect(second.allowed && second.remaining == 0)
        #expect(try await limiter.acquire(user: user, tier: Self.tier, cost: 1).allowed == false)

        // `resetAfter` is when the oldest (the first 3) leave; just after it, the last 2 still count
        // (for about half a window more).
        #expect(second.resetAfter > .zero && second.resetAfter <= window / 2 + .milliseconds(5), "resetAfter \(second.resetAfter)")
        try await Task.sleep(for: second.resetAfter + .milliseconds(100))
        let all = try await limiter.acquire(user: user, tier: Self.tier, cost: 5)
        #expect(!all.allowed && all.reason == .limitExceeded, "only the first 3 left the window, not all 5: \(all)")
        #expect(all.remaining == 3)
        let three = try await limiter.acquire(user: user, tier: Self.tier, cost: 3)
        #expect(three.allowed && three.remaining == 0, "\(three)")
        let refused = try await limiter.acquire(user: user, tier: Self.tier, cost: 1)
        #expect(!refused.allowed)
        let retry = try #require(refused.retryAfter)
        #expect(retry > .zero && retry < window, "the refusal waits for the second batch only: \(retry)")
    }

    // MARK: - Script and keys

    @Test func theScriptIsReloadedAfterScriptFlush() async throws {
        // A private server: SCRIPT FLUSH between another test's SCRIPT LOAD and EVALSHA would fail it.
        try await Self.withPrivateServer { server in
            let (limiter, client) = try Self.limiter(server)
            defer { client.close() }
            let user = Self.user()
            #expect(try await Self.spend(limiter, user, 2).map(\.remaining) == [4, 3])
            #expect(try await RedisClientForTests.commandCount(server.url, "script|load") == 1)

            #expect(try await client.command(["SCRIPT", "FLUSH"]) == .status("OK"))
            let after = try await limiter.acquire(user: user, tier: Self.tier, cost: 1)
            #expect(after.allowed && after.remaining == 2, "the budget kept counting across the flush")
            #expect(try await RedisClientForTests.commandCount(server.url, "script|load") == 2, "loaded again on NOSCRIPT")
            #expect(try await Self.spend(limiter, user, 3).map(\.allowed) == [true, true, false])
        }
    }

    @Test func usersWithOddIdsAreIndependent() async throws {
        try await Self.withPrivateServer { server in
            let (limiter, client) = try Self.limiter(server, policy: Self.policy(limit: 5, window: .seconds(30)))
            defer { client.close() }
            let ids = ["a:b", "a", "b", "a%3Ab", "a%b", "*", "?", "[ab]", "a b", "ユーザー", "🙂", "é", "rl:a"]
            for id in ids {
                let decision = try await limiter.acquire(user: id, tier: Self.tier, cost: 1)
                #expect(decision.allowed && decision.remaining == 4, "user \(id) shares a budget with an earlier one: \(decision)")
            }
            // Exhausting "*" and "a:b" leaves "a", "b" and "?" alone.
            _ = try await limiter.acquire(user: "*", tier: Self.tier, cost: 4)
            _ = try await limiter.acquire(user: "a:b", tier: Self.tier, cost: 4)
            #expect(try await limiter.acquire(user: "*", tier: Self.tier, cost: 1).allowed == false)
            #expect(try await limiter.acquire(user: "a:b", tier: Self.tier, cost: 1).allowed == false)
            for id in ["a", "b", "?", "a%3Ab"] {
                #expect(try await limiter.acquire(user: id, tier: Self.tier, cost: 1).remaining == 3, "user \(id)")
            }
            let keys = try await client.command(["KEYS", "soma:v1:rl:*"]).array ?? []
            #expect(keys.count == ids.count, "one log per user: \(keys.compactMap(\.string))")
        }
    }

    /// Ids whose first character is a combining mark, or whose last one is a prepended concatenation
    /// mark, join the key's `:` into one grapheme cluster; the key must not lose them.
    @Test func usersWithIdsAtAGraphemeBoundaryAreIndependent() async throws {
        let (limiter, client) = try Self.limiter(try await RedisHarness.shared(), policy: Self.policy(limit: 5, window: .seconds(30)))
        defer { client.close() }
        let base = Self.user()
        let pairs = [
            ("a leading U+0301 COMBINING ACUTE ACCENT", base + "-x", "\u{301}" + base + "-x"),
            ("a trailing U+0600 ARABIC NUMBER SIGN (Prepend)", base + "-y", base + "-y" + "\u{600}"),
        ]
        for (what, plain, odd) in pairs {
            #expect(try await limiter.acquire(user: plain, tier: Self.tier, cost: 5).allowed)
            let decision = try await limiter.acquire(user: odd, tier: Self.tier, cost: 1)
            #expect(decision.allowed && decision.remaining == 4, "the id with \(what) shares the budget of the id without it: \(decision)")
        }
    }

    // MARK: - ResilientRateLimiter

    @Test func resilientLimiterFallsBackWhileRedisIsDownAndReturnsAfterARestart() async throws {
        try await Self.withPrivateServer { server in
            // A long window: nothing here waits for it, and the budgets must not lapse mid-test.
            let policy = Self.policy(limit: 5, window: .seconds(30))
            let client = try Self.client(server, timeout: .milliseconds(250))
            defer { client.close() }
            let local = SlidingWindowRateLimiter(policy: policy)
            let breaker = CircuitBreaker(
                name: "redis",
                configuration: CircuitBreakerConfiguration(
                    slidingWindowSize: 4, minimumNumberOfCalls: 2, failureRateThreshold: 50,
                    slowCallDurationThreshold: .seconds(1), waitDurationInOpenState: .milliseconds(300), permittedCallsInHalfOpenState: 1
                ))
            let resilient = ResilientRateLimiter(
                shared: RedisRateLimiter(client: client, policy: policy), local: local, breaker: breaker, metrics: SomaMetrics()
            )

            // Up: the shared budget, spent by another instance, refuses here; the local one is unused.
            let spentElsewhere = Self.user() + "-up"
            do {
                let (other, otherClient) = try Self.limiter(server, policy: policy)
                defer { otherClient.close() }
                #expect(try await other.acquire(user: spentElsewhere, tier: Self.tier, cost: 5).allowed)
            }
            let refusedShared = await resilient.acquire(user: spentElsewhere, tier: Self.tier)
            #expect(!refusedShared.allowed && refusedShared.reason == .limitExceeded)
            #expect(local.trackedUserCount == 0)
            #expect(breaker.state == .closed)

            // Down: every acquire still answers, from the local budget, with its semantics.
            try await server.stop()
            let user = Self.user() + "-down"
            var remaining: [Int] = []
            for _ in 0..<5 {
                let decision = await resilient.acquire(user: user, tier: Self.tier)
                #expect(decision.allowed)
                remaining.append(decision.remaining)
            }
            #expect(remaining == [4, 3, 2, 1, 0])
            let refusedLocally = await resilient.acquire(user: user, tier: Self.tier)
            #expect(!refusedLocally.allowed && refusedLocally.reason == .limitExceeded)
            #expect(refusedLocally.retryAfter.map { $0 > .zero && $0 <= .seconds(30) } == true)
            #expect(await resilient.acquire(user: user, tier: Self.tier, cost: 6).reason == .costExceedsLimit)
            #expect(await resilient.acquire(user: user, tier: Self.tier, cost: 0).reason == .invalidCost)
            #expect(local.trackedUserCount == 1, "the fallback answered (soma_rate_limit_fallback_total is not readable here)")
            #expect(breaker.stateValue == 2, "the failures opened the breaker: \(breaker.state)")
            // The budget is per instance during the outage: the user spent in Redis starts afresh.
            #expect(await resilient.acquire(user: spentElsewhere, tier: Self.tier).allowed)
            #expect(local.trackedUserCount == 2)

            // Back: once a trial call succeeds the breaker closes and the shared budget is used again.
            try await server.restart()
            let deadline = ContinuousClock.now + .seconds(10)
            var probes = 0
            while breaker.state != .closed && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                _ = await resilient.acquire(user: Self.user() + "-probe-\(probes)", tier: Self.tier)
                probes += 1
            }
            try #require(breaker.state == .closed, "the breaker did not close within 10 s (\(probes) probes)")
            let tracked = local.trackedUserCount

            let sharedAgain = Self.user() + "-back"
            do {
                let (other, otherClient) = try Self.limiter(server, policy: policy)
                defer { otherClient.close() }
                #expect(try await other.acquire(user: sharedAgain, tier: Self.tier, cost: 4).allowed)
            }
            let last = await resilient.acquire(user: sharedAgain, tier: Self.tier)
            #expect(last.allowed && last.remaining == 0, "the unit spent by the other instance counts here: \(last)")
            #expect(await resilient.acquire(user: sharedAgain, tier: Self.tier).allowed == false)
            #expect(local.trackedUserCount == tracked, "Redis answered, not the local limiter")
        }
    }
}
