import Soma
import Testing

@Suite(.timeLimit(.minutes(1)))
struct RateLimiterTests {
    /// A limiter on a manual clock with the default policy (100 per 60 s for every tier).
    private func makeLimiter(
        policy: TierPolicy = TierPolicy(),
        maxTrackedUsers: Int = 100_000,
        cleanupInterval: Duration = .seconds(60)
    ) -> (SlidingWindowRateLimiter, ManualClock) {
        let clock = ManualClock()
        let configuration = SlidingWindowRateLimiter.Configuration(
            policy: policy, maxTrackedUsers: maxTrackedUsers, cleanupInterval: cleanupInterval
        )
        return (SlidingWindowRateLimiter(configuration: configuration, clock: clock), clock)
    }

    @Test
    func defaultPolicyMatchesTheArchitectureTable() {
        let policy = TierPolicy.default
        #expect(
            policy[.premium]
                == TierLimits(
                    requestsPerWindow: 100, window: .seconds(60), maxInFlightPerUser: 8, maxTextBytes: 65_536, maxBatchItems: 64
                ))
        #expect(
            policy[.standard]
                == TierLimits(
                    requestsPerWindow: 100, window: .seconds(60), maxInFlightPerUser: 4, maxTextBytes: 32_768, maxBatchItems: 32
                ))
        #expect(
            policy[.free]
                == TierLimits(
                    requestsPerWindow: 100, window: .seconds(60), maxInFlightPerUser: 2, maxTextBytes: 16_384, maxBatchItems: 8
                ))
        var custom = policy
        custom[.free].maxBatchItems = 4
        #expect(custom.limits(for: .free).maxBatchItems == 4)
        #expect(custom[.standard] == policy[.standard])
    }

    @Test
    func hundredAllowedThenRefusedUntilTheOldestLeaves() async {
        let (limiter, clock) = makeLimiter()
        // The oldest request at t = 0, the other 99 spread over the next 10 s.
        #expect(await limiter.acquire(user: "u", tier: .standard).allowed)
        for _ in 1..<100 {
            clock.advance(by: .milliseconds(100))
            #expect(await limiter.acquire(user: "u", tier: .standard).allowed)
        }
        clock.advance(by: .seconds(20))  // t = 29.9 s

        let refused = await limiter.acquire(user: "u", tier: .standard)
        #expect(!refused.allowed)
        #expect(refused.reason == .limitExceeded)
        #expect(refused.retryAfter == .milliseconds(30_100), "the oldest (t = 0) leaves at t = 60 s")
        #expect(refused.resetAfter == .milliseconds(30_100))
        #expect(refused.remaining == 0)
        #expect(refused.limit == 100)

        clock.advance(by: .milliseconds(30_099))
        #expect(!(await limiter.acquire(user: "u", tier: .standard).allowed), "1 ms before the oldest leaves")
        clock.advance(by: .milliseconds(1))
        let admitted = await limiter.acquire(user: "u", tier: .standard)
        #expect(admitted.allowed, "exactly when the oldest leaves")
        #expect(admitted.remaining == 0)
        // The next frees when the second oldest (t = 0.1 s) leaves.
        let next = await limiter.acquire(user: "u", tier: .standard)
        #expect(!next.allowed)
        #expect(next.retryAfter == .milliseconds(100))
    }

    @Test
    func slidingNotFixedWindow() {
        let (limiter, clock) = makeLimiter()
        for _ in 0..<50 { #expect(limiter.acquireNow(user: "u", tier: .free).allowed) }
        clock.advance(by: .seconds(30))
        for _ in 0..<50 { #expect(limiter.acquireNow(user: "u", tier: .free).allowed) }
        // A fixed 60 s window would reset at t = 60 s and allow 100 here.
        clock.advance(by: .seconds(31))  // t = 61 s: the first 50 left, the second 50 still count
        var allowed = 0
        for _ in 0..<51 where limiter.acquireNow(user: "u", tier: .free).allowed { allowed += 1 }
        #expect(allowed == 50)
        let refused = limiter.acquireNow(user: "u", tier: .free)
        #expect(refused.retryAfter == .seconds(29), "the t = 30 s batch leaves at t = 90 s")
    }

    @Test
    func batchCostCountsItems() {
        let (limiter, clock) = makeLimiter()
        let first = limiter.acquireNow(user: "u", tier: .premium, cost: 64)
        #expect(first.allowed)
        #expect(first.remaining == 36)
        clock.advance(by: .seconds(10))
        #expect(limiter.acquireNow(user: "u", tier: .premium, cost: 30).remaining == 6)

        let tooMany = limiter.acquireNow(user: "u", tier: .premium, cost: 7)
        #expect(!tooMany.allowed)
        #expect(tooMany.remaining == 6)
        // 64 units must leave for 7 to fit: that is the t = 0 batch, at t = 60 s.
        #expect(tooMany.retryAfter == .seconds(50))
        #expect(limiter.acquireNow(user: "u", tier: .premium, cost: 6).allowed)

        clock.advance(by: .seconds(50))
        let afterBatchLeft = limiter.acquireNow(user: "u", tier: .premium, cost: 64)
        #expect(afterBatchLeft.allowed, "the 64 units of the t = 0 batch left together")
        #expect(afterBatchLeft.remaining == 0)
    }

    @Test
    func retryAfterCoversEnoughUnitsForTheCost() {
        let (limiter, clock) = makeLimiter()
        for second in 0..<10 {
            #expect(limiter.acquireNow(user: "u", tier: .standard, cost: 10).allowed)
            if second < 9 { clock.advance(by: .seconds(1)) }
        }
        // t = 9 s, 100 used in ten entries of 10 at t = 0 … 9 s. 25 units need three entries to leave.
        let refused = limiter.acquireNow(user: "u", tier: .standard, cost: 25)
        #expect(refused.retryAfter == .seconds(53), "the entry of t = 2 s leaves at t = 62 s")
        clock.advance(by: .seconds(53))
        #expect(limiter.acquireNow(user: "u", tier: .standard, cost: 25).allowed)
    }

    @Test
    func refusedRequestsConsumeNothing() {
        let (limiter, clock) = makeLimiter()
        for _ in 0..<100 { #expect(limiter.acquireNow(user: "u", tier: .standard).allowed) }
        clock.advance(by: .seconds(30))
        for _ in 0..<1_000 { #expect(!limiter.acquireNow(user: "u", tier: .standard).allowed) }
        // Had the refusals counted, the window would stay full until t = 90 s.
        clock.advance(by: .seconds(30))
        let afterWindow = limiter.acquireNow(user: "u", tier: .standard)
        #expect(afterWindow.allowed)
        #expect(afterWindow.remaining == 99)

        // A refused batch consumes nothing either.
        #expect(!limiter.acquireNow(user: "u", tier: .standard, cost: 100).allowed)
        #expect(limiter.acquireNow(user: "u", tier: .standard, cost: 99).allowed)
    }

    @Test
    func usersAreIsolated() {
        let (limiter, _) = makeLimiter()
        for _ in 0..<100 { #expect(limiter.acquireNow(user: "alice", tier: .free).allowed) }
        #expect(!limiter.acquireNow(user: "alice", tier: .free).allowed)
        let bob = limiter.acquireNow(user: "bob", tier: .free)
        #expect(bob.allowed)
        #expect(bob.remaining == 99)
        #expect(!limiter.acquireNow(user: "alice", tier: .premium).allowed, "the budget is per user, whatever the tier")
    }

    @Test
    func perTierLimitsAreConfigurable() {
        var policy = TierPolicy()
        policy[.free].requestsPerWindow = 5
        policy[.free].window = .seconds(10)
        policy[.premium].requestsPerWindow = 200
        let (limiter, clock) = makeLimiter(policy: policy)

        for _ in 0..<5 { #expect(limiter.acquireNow(user: "f", tier: .free).allowed) }
        let refused = limiter.acquireNow(user: "f", tier: .free)
        #expect(!refused.allowed)
        #expect(refused.limit == 5)
        #expect(refused.retryAfter == .seconds(10))

        for _ in 0..<200 { #expect(limiter.acquireNow(user: "p", tier: .premium).allowed) }
        #expect(!limiter.acquireNow(user: "p", tier: .premium).allowed)
        #expect(limiter.acquireNow(user: "s", tier: .standard).limit == 100)

        clock.advance(by: .seconds(10))
        #expect(limiter.acquireNow(user: "f", tier: .free).allowed, "the free window is 10 s")
        #expect(!limiter.acquireNow(user: "p", tier: .premium).allowed, "the premium window is still 60 s")
    }

    @Test
    func costAboveTheLimitIsRefusedWithAReason() {
        let (limiter, _) = makeLimiter()
        let tooBig = limiter.acquireNow(user: "u", tier: .standard, cost: 101)
        #expect(!tooBig.allowed)
        #expect(tooBig.reason == .costExceedsLimit)
        #expect(tooBig.retryAfter == nil, "no wait would admit it")
        #expect(tooBig.remaining == 100)
        #expect(tooBig.reason?.description.contains("exceeds") == true)

        let invalid = limiter.acquireNow(user: "u", tier: .standard, cost: 0)
        #expect(!invalid.allowed)
        #expect(invalid.reason == .invalidCost)
        #expect(limiter.trackedUserCount == 0, "refusals of invalid costs create no state")

        #expect(limiter.acquireNow(user: "u", tier: .standard, cost: 100).allowed, "exactly the limit fits")
    }

    @Test
    func headerValues() {
        let (limiter, clock) = makeLimiter()
        let first = limiter.acquireNow(user: "u", tier: .standard)
        #expect(first == RateLimitDecision(allowed: true, limit: 100, remaining: 99, resetAfter: .seconds(60)))
        clock.advance(by: .seconds(15))
        let second = limiter.acquireNow(user: "u", tier: .standard, cost: 9)
        #expect(second.allowed)
        #expect(second.limit == 100)
        #expect(second.remaining == 90)
        #expect(second.resetAfter == .seconds(45), "the oldest (t = 0) leaves at t = 60 s")
        #expect(second.retryAfter == nil)
        #expect(second.reason == nil)
    }

    @Test
    func idleUsersArePrunedOnTheCleanupInterval() {
        let (limiter, clock) = makeLimiter(cleanupInterval: .seconds(60))
        for index in 0..<1_000 { _ = limiter.acquireNow(user: "user-\(index)", tier: .free) }
        #expect(limiter.trackedUserCount == 1_000)

        clock.advance(by: .seconds(30))
        _ = limiter.acquireNow(user: "active", tier: .free)
        #expect(limiter.trackedUserCount == 1_001, "nothing is dropped before the interval")

        clock.advance(by: .seconds(30))  // t = 60 s: the first 1000 are idle, "active" is not
        _ = limiter.acquireNow(user: "late", tier: .free)
        #expect(limiter.trackedUserCount == 2, "the sweep kept only users with counted requests")

        clock.advance(by: .seconds(60))
        #expect(limiter.pruneIdleUsers() == 2)
        #expect(limiter.trackedUserCount == 0)
    }

    @Test
    func mapBeyondTheBoundSweepsAtOnceButNeverLoosensTheLimit() {
        let (limiter, clock) = makeLimiter(maxTrackedUsers: 10, cleanupInterval: .seconds(3_600))
        for _ in 0..<100 { _ = limiter.acquireNow(user: "heavy", tier: .free) }
        for index in 0..<9 { _ = limiter.acquireNow(user: "old-\(index)", tier: .free) }
        #expect(limiter.trackedUserCount == 10)

        clock.advance(by: .seconds(59))
        // Still inside the window: going past the bound sweeps but may drop nobody.
        for index in 0..<5 { _ = limiter.acquireNow(user: "new-\(index)", tier: .free) }
        #expect(limiter.trackedUserCount == 15)
        #expect(!limiter.acquireNow(user: "heavy", tier: .free).allowed, "an active user keeps their log")

        clock.advance(by: .seconds(1))  // t = 60 s: heavy and old-* are idle
        for index in 0..<20 { _ = limiter.acquireNow(user: "newer-\(index)", tier: .free) }
        #expect(limiter.trackedUserCount <= 25)
        #expect(limiter.trackedUserCount >= 20)
        #expect(limiter.acquireNow(user: "heavy", tier: .free).remaining == 99, "pruned users start afresh")
    }

    @Test
    func concurrentAcquiresAdmitExactlyTheLimit() async {
        let (limiter, _) = makeLimiter()
        let allowed = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<1_000 {
                group.addTask {
                    let tier = Tier.allCases[index % 3]
                    return await limiter.acquire(user: "shared", tier: tier, cost: 1).allowed
                }
                // Other users hammer the limiter at the same time.
                group.addTask {
                    _ = await limiter.acquire(user: "other-\(index % 50)", tier: .free, cost: 1)
                    return false
                }
            }
            var count = 0
            for await result in group where result { count += 1 }
            return count
        }
        #expect(allowed == 100)
        #expect(limiter.acquireNow(user: "shared", tier: .standard).remaining == 0)
    }
}
