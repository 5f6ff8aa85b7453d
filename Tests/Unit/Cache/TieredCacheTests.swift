// Over 500 lines on purpose: every layer (L1, L2, fallback) against every failure (down, slow,
// breaker open, invalidation lost) of one type, with the fakes they share.
import MetricsTestKit
import Soma
import Synchronization
import Testing

/// What a failing fake layer throws.
private struct TieredCacheLayerDown: Error {}

/// A one-shot latch: `wait()` suspends until `open()` (at once when already open).
private final class TieredCacheGate: Sendable {
    private let state = Mutex<(opened: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.opened { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.opened = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// An in-memory `ResultCache` (L2 or fallback) that logs every call it receives, failing ones
/// included, and can be switched to throw.
private final class TieredCacheFakeLayer: ResultCache {
    enum Call: Equatable, CustomStringConvertible {
        case get([CacheKey])
        case set([CacheKey], ttl: Duration)
        case delete([CacheKey])

        var description: String {
            switch self {
            case .get(let keys): "get(\(keys.count))"
            case .set(let keys, let ttl): "set(\(keys.count), ttl: \(ttl))"
            case .delete(let keys): "delete(\(keys.map(\.description)))"
            }
        }

        var isGet: Bool { if case .get = self { true } else { false } }
        var isSet: Bool { if case .set = self { true } else { false } }
    }

    private struct State {
        var values: [CacheKey: [UInt8]] = [:]
        var ttls: [CacheKey: Duration] = [:]
        var calls: [Call] = []
        var failing = false
        /// When set, every `get` waits on this gate before it answers (a hung server).
        var hang: TieredCacheGate?
        /// When set, the next `delete` applies, then waits on this gate before it returns.
        var holdNextDelete: TieredCacheGate?
        var deleteHeld = false
    }

    let layer: String
    private let state = Mutex(State())

    init(layer: String) {
        self.layer = layer
    }

    // MARK: Control and inspection

    var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    /// Every call received so far, in order (failed ones included).
    var calls: [Call] { state.withLock { $0.calls } }
    var getCalls: Int { calls.filter(\.isGet).count }
    var setCalls: Int { calls.filter(\.isSet).count }

    /// Forgets the calls received so far (not the values).
    func clearCalls() { state.withLock { $0.calls = [] } }

    /// Stores a value directly, as another instance (or an earlier run) would have.
    func seed(_ key: CacheKey, _ value: [UInt8]) { state.withLock { $0.values[key] = value } }

    func value(_ key: CacheKey) -> [UInt8]? { state.withLock { $0.values[key] } }
    func ttl(_ key: CacheKey) -> Duration? { state.withLock { $0.ttls[key] } }
    var count: Int { state.withLock { $0.values.count } }

    func holdNextDelete(on gate: TieredCacheGate) { state.withLock { $0.holdNextDelete = gate } }
    var deleteHeld: Bool { state.withLock { $0.deleteHeld } }

    // MARK: ResultCache

    func get(_ keys: [CacheKey]) async throws -> [[UInt8]?] {
        if let gate = state.withLock({ $0.hang }) { await gate.wait() }
        return try state.withLock { state in
            state.calls.append(.get(keys))
            if state.failing { throw TieredCacheLayerDown() }
            return keys.map { state.values[$0] }
        }
    }

    func hang(on gate: TieredCacheGate?) { state.withLock { $0.hang = gate } }

    func set(_ entries: [(key: CacheKey, value: [UInt8])], ttl: Duration) throws {
        try state.withLock { state in
            state.calls.append(.set(entries.map(\.key), ttl: ttl))
            if state.failing { throw TieredCacheLayerDown() }
            for entry in entries {
                state.values[entry.key] = entry.value
                state.ttls[entry.key] = ttl
            }
        }
    }

    @discardableResult
    func delete(_ keys: [CacheKey]) async throws -> Int {
        let (removed, gate) = try state.withLock { state -> (Int, TieredCacheGate?) in
            state.calls.append(.delete(keys))
            if state.failing { throw TieredCacheLayerDown() }
            let removed = keys.count(where: { state.values.removeValue(forKey: $0) != nil })
            for key in keys { state.ttls[key] = nil }
            let gate = state.holdNextDelete
            state.holdNextDelete = nil
            state.deleteHeld = gate != nil
            return (removed, gate)
        }
        if let gate {
            await gate.wait()
            state.withLock { $0.deleteHeld = false }
        }
        return removed
    }
}

/// A tiered cache over fakes, with a manual clock for L1 and the breaker, and test metrics.
private struct TieredCacheFixture {
    let clock = ManualClock()
    let metrics = TestMetrics()
    let remote: TieredCacheFakeLayer?
    let fallback: TieredCacheFakeLayer?
    let breaker: CircuitBreaker?
    let cache: TieredCache

    static let ttl: Duration = .seconds(3600)
    static let userTTL: Duration = .seconds(60)

    /// - Parameter breaker: a breaker with this configuration on the fixture's clock; nil for none.
    init(
        remote hasRemote: Bool = true, fallback hasFallback: Bool = true, breaker configuration: CircuitBreakerConfiguration? = nil,
        callTimeout: Duration? = nil
    ) {
        let remote = hasRemote ? TieredCacheFakeLayer(layer: "l2") : nil
        let fallback = hasFallback ? TieredCacheFakeLayer(layer: "fallback") : nil
        let clock = self.clock
        let breaker = configuration.map { CircuitBreaker(name: "redis", configuration: $0, clock: clock) }
        self.remote = remote
        self.fallback = fallback
        self.breaker = breaker
        self.cache = TieredCache(
            configuration: TieredCache.Configuration(ttl: Self.ttl, userTTL: Self.userTTL, callTimeout: callTimeout),
            l1: L1Cache<[UInt8]>(configuration: L1Cache.Configuration(defaultTTL: .seconds(600)), clock: clock),
            remote: remote,
            fallback: fallback,
            breaker: breaker,
            metrics: SomaMetrics(factory: metrics)
        )
    }

    /// `soma_cache_requests_total{layer, result}`.
    func requests(_ layer: String, _ result: String) -> Int64 {
        metrics.counterTotal(label: SomaMetrics.Name.cacheRequests, dimensions: [("layer", layer), ("result", result)])
    }

    /// Every `soma_cache_requests_total` counter as "layer/result" → value (zeros left out).
    var allRequests: [String: Int64] {
        var result: [String: Int64] = [:]
        for layer in ["l1", "l2", "fallback"] {
            for outcome in ["hit", "miss"] where requests(layer, outcome) != 0 {
                result["\(layer)/\(outcome)"] = requests(layer, outcome)
            }
        }
        return result
    }
}

/// A breaker that judges the last two calls (both needed), waits 5 s open, and closes after one
/// successful trial call.
private let tieredCacheSmallBreaker = CircuitBreakerConfiguration(
    slidingWindowSize: 2, minimumNumberOfCalls: 2, failureRateThreshold: 50,
    slowCallDurationThreshold: .seconds(1), waitDurationInOpenState: .seconds(5), permittedCallsInHalfOpenState: 1
)

@Suite(.timeLimit(.minutes(1)))
struct TieredCacheTests {
    private func key(_ i: Int) -> CacheKey {
        .analysis(module: .emotion, modelVersion: "m1", normalizedText: "text number \(i)")
    }

    private func value(_ i: Int) -> [UInt8] { Array("value \(i)".utf8) }

    private func profile(_ user: String) -> CacheKey { .user(user, "profile") }

    // MARK: - Analysis entries

    @Test func l1HitShortCircuitsTheRemote() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        await f.cache.set([(key(1), value(1))])
        remote.clearCalls()

        let hits = await f.cache.get([key(1)])
        #expect(hits == [CacheHit(value: value(1), source: .l1)])
        #expect(remote.calls == [])
        #expect(fallback.calls == [])
        #expect(f.allRequests == ["l1/hit": 1])
    }

    @Test func l1MissesGoToTheRemoteInOneBatchAndHitsAreCopiedIntoL1() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        let keys = (0..<5).map(key)
        for i in 0..<5 { remote.seed(key(i), value(i)) }

        let first = await f.cache.get(keys)
        #expect(first == (0..<5).map { CacheHit(value: value($0), source: .l2) })
        #expect(remote.calls == [.get(keys)], "5 missing keys, one remote call")
        #expect(f.cache.l1.count == 5)

        let second = await f.cache.get(keys)
        #expect(second == (0..<5).map { CacheHit(value: value($0), source: .l1) })
        #expect(remote.calls.count == 1, "the second lookup is answered by L1")
        #expect(fallback.calls == [], "the fallback is not asked while the remote answers")
    }

    @Test func onlyTheKeysL1MissedAreAskedOfTheRemoteInOrder() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        f.cache.l1.set(key(0), value(0), cost: 10)
        f.cache.l1.set(key(3), value(3), cost: 10)
        remote.seed(key(1), value(1))
        remote.seed(key(4), value(4))
        fallback.seed(key(2), value(2))  // the fallback is not asked while the remote answers

        let hits = await f.cache.get((0..<5).map(key))
        #expect(
            hits == [
                CacheHit(value: value(0), source: .l1),
                CacheHit(value: value(1), source: .l2),
                nil,
                CacheHit(value: value(3), source: .l1),
                CacheHit(value: value(4), source: .l2),
            ])
        #expect(remote.calls == [.get([key(1), key(2), key(4)])])
        #expect(fallback.calls == [])
        #expect(await f.cache.get([]) == [])
        #expect(remote.calls.count == 1)
    }

    @Test func setWritesL1AndTheRemoteWithTheConfiguredTTL() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        await f.cache.set([(key(1), value(1)), (key(2), value(2))])

        #expect(remote.calls == [.set([key(1), key(2)], ttl: TieredCacheFixture.ttl)], "one remote call for the batch")
        #expect(remote.value(key(1)) == value(1) && remote.value(key(2)) == value(2))
        #expect(f.cache.l1.get(key(1)) == value(1) && f.cache.l1.get(key(2)) == value(2))
        #expect(fallback.calls == [], "the fallback receives fills only while the remote is down")

        await f.cache.set([])
        #expect(remote.calls.count == 1, "an empty fill calls nothing")
    }

    @Test func aFailingRemoteFallsBackForLookupsAndFills() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        remote.seed(key(1), value(1))  // unreachable while it fails
        fallback.seed(key(1), Array("fallback copy".utf8))
        remote.failing = true

        let hits = await f.cache.get([key(1), key(2)])
        #expect(hits == [CacheHit(value: Array("fallback copy".utf8), source: .fallback), nil])
        #expect(remote.calls == [.get([key(1), key(2)])])
        #expect(fallback.calls == [.get([key(1), key(2)])])
        #expect(await f.cache.get([key(1)]) == [CacheHit(value: Array("fallback copy".utf8), source: .l1)], "fallback hits are copied into L1")

        await f.cache.set([(key(3), value(3))])
        #expect(fallback.value(key(3)) == value(3))
        #expect(fallback.ttl(key(3)) == TieredCacheFixture.ttl)
        #expect(remote.value(key(3)) == nil)
        #expect(f.cache.l1.get(key(3)) == value(3))

        #expect(f.allRequests == ["l1/miss": 2, "l1/hit": 1, "fallback/hit": 1, "fallback/miss": 1])
    }

    /// A remote that never answers (a hung Redis) is given up on at the call timeout: the lookup is
    /// served by the fallback and the breaker counts a failure. Without the bound the lookups would
    /// wait for the gate, which opens only when the test ends: the time limit fails it. (No
    /// wall-clock bound of the test's own: on a busy machine a starved cooperative pool fires a
    /// short one first.)
    @Test(.timeLimit(.minutes(1))) func aHungRemoteIsGivenUpOnAtTheCallTimeout() async throws {
        let f = TieredCacheFixture(breaker: tieredCacheSmallBreaker, callTimeout: .milliseconds(50))
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        let breaker = try #require(f.breaker)
        fallback.seed(key(1), value(1))
        fallback.seed(key(2), value(2))
        let gate = TieredCacheGate()
        remote.hang(on: gate)
        defer { gate.open() }
        let cache = f.cache
        let (first, second) = (key(1), key(2))
        #expect(await cache.get([first]) == [CacheHit(value: value(1), source: .fallback)])
        #expect(await cache.get([second]) == [CacheHit(value: value(2), source: .fallback)])
        #expect(breaker.stateValue == 2, "two calls past their bound are two failures: the breaker opened")
    }

    /// A request's Redis calls share one budget: inside it a hung remote is given up on when the
    /// budget ends, even with a longer call timeout (the test's time limit catches a wait for the
    /// gate), and once it is spent the remote is not called at all, and the breaker counts nothing.
    @Test(.timeLimit(.minutes(1))) func aRequestsRedisBudgetBoundsAndThenSkipsItsRemoteCalls() async throws {
        let f = TieredCacheFixture(breaker: tieredCacheSmallBreaker, callTimeout: .seconds(600))
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        let breaker = try #require(f.breaker)
        fallback.seed(key(1), value(1))
        fallback.seed(key(2), value(2))
        let gate = TieredCacheGate()
        remote.hang(on: gate)
        defer { gate.open() }
        let cache = f.cache
        let (first, second) = (key(1), key(2))
        let hits = await RedisBudget.within(.milliseconds(50)) { () async -> [[CacheHit?]] in
            let one = await cache.get([first])
            // The budget is spent by now: no call, straight to the fallback.
            let two = await cache.get([second])
            await cache.set([(key(3), value(3))])
            return [one, two]
        }
        #expect(hits == [[CacheHit(value: value(1), source: .fallback)], [CacheHit(value: value(2), source: .fallback)]])
        #expect(fallback.value(key(3)) == value(3), "the fill went to the fallback")
        // Two failures open this breaker (see the test above): the calls not made were not failures.
        #expect(breaker.stateValue == 0, "one failure; the calls not made are not failures")
    }

    @Test func withoutAFallbackAFailingRemoteIsAMiss() async throws {
        let f = TieredCacheFixture(fallback: false)
        let remote = try #require(f.remote)
        remote.seed(key(1), value(1))
        remote.failing = true
        #expect(await f.cache.get([key(1)]) == [nil])
        await f.cache.set([(key(2), value(2))])
        #expect(await f.cache.get([key(2)]) == [CacheHit(value: value(2), source: .l1)], "L1 still takes the fill")
    }

    @Test func theBreakerOpensAndTheRemoteIsNotCalledUntilATrialSucceeds() async throws {
        let f = TieredCacheFixture(breaker: tieredCacheSmallBreaker)
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        let breaker = try #require(f.breaker)
        for i in 0..<10 { fallback.seed(key(i), value(i)) }
        remote.failing = true

        // Two failed calls fill the window: the breaker opens.
        #expect(await f.cache.get([key(0)]) == [CacheHit(value: value(0), source: .fallback)])
        #expect(breaker.state == .closed)
        #expect(await f.cache.get([key(1)]) == [CacheHit(value: value(1), source: .fallback)])
        #expect(breaker.stateValue == 2)
        #expect(!f.cache.remoteHealthy)
        #expect(remote.calls.count == 2)

        // Open: lookups, fills and per-user calls never reach the remote.
        remote.failing = false
        #expect(await f.cache.get([key(2)]) == [CacheHit(value: value(2), source: .fallback)])
        await f.cache.set([(key(20), value(20))])
        #expect(fallback.value(key(20)) == value(20))
        #expect(await f.cache.getUser(profile("u1")) == nil)
        await f.cache.setUser(profile("u1"), value(99))
        f.clock.advance(by: .seconds(4))
        #expect(await f.cache.get([key(3)]) == [CacheHit(value: value(3), source: .fallback)])
        #expect(remote.calls.count == 2, "no remote call while the breaker is open: \(remote.calls)")
        #expect(remote.value(profile("u1")) == nil)

        // After the wait, the next call is the trial; it succeeds and the breaker closes.
        f.clock.advance(by: .seconds(1))
        remote.seed(key(4), Array("remote copy".utf8))
        #expect(await f.cache.get([key(4)]) == [CacheHit(value: Array("remote copy".utf8), source: .l2)])
        #expect(breaker.state == .closed)
        #expect(f.cache.remoteHealthy)
        await f.cache.set([(key(50), value(50))])
        #expect(remote.value(key(50)) == value(50))
        #expect(fallback.value(key(50)) == nil, "fills go to the remote again, not the fallback")
        #expect(remote.calls.count == 4)
    }

    // MARK: - Per-user entries

    @Test func withARemotePerUserEntriesLiveOnlyInTheRemote() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        await f.cache.setUser(profile("u1"), value(1))

        #expect(remote.calls == [.set([profile("u1")], ttl: TieredCacheFixture.userTTL)])
        #expect(remote.value(profile("u1")) == value(1))
        #expect(f.cache.l1.count == 0, "never in L1 with a remote")
        #expect(fallback.calls == [], "never in the fallback")

        #expect(await f.cache.getUser(profile("u1")) == CacheHit(value: value(1), source: .l2))
        #expect(await f.cache.getUser(profile("u1")) == CacheHit(value: value(1), source: .l2), "not copied into L1")
        #expect(remote.calls.filter(\.isGet).count == 2)
        #expect(f.cache.l1.count == 0)
        #expect(await f.cache.getUser(profile("u2")) == nil)
        #expect(f.allRequests == ["l2/hit": 2, "l2/miss": 1])
    }

    @Test func withARemoteDownPerUserEntriesAreNotCachedAnywhere() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        remote.failing = true
        await f.cache.setUser(profile("u1"), value(1))
        #expect(await f.cache.getUser(profile("u1")) == nil)
        #expect(f.cache.l1.count == 0)
        #expect(fallback.calls == [])
        remote.failing = false
        #expect(await f.cache.getUser(profile("u1")) == nil, "the write during the outage was dropped, not queued")
    }

    @Test func withoutARemotePerUserEntriesLiveInL1ForTheUserTTL() async throws {
        let f = TieredCacheFixture(remote: false)
        let fallback = try #require(f.fallback)
        await f.cache.setUser(profile("u1"), value(1))
        await f.cache.set([(key(1), value(1))])  // analysis entry: L1's default TTL (600 s)

        #expect(f.cache.l1.count == 2)
        #expect(fallback.value(profile("u1")) == nil, "never in the fallback")
        #expect(await f.cache.getUser(profile("u1")) == CacheHit(value: value(1), source: .l1))

        f.clock.advance(by: TieredCacheFixture.userTTL - .seconds(1))
        #expect(await f.cache.getUser(profile("u1")) == CacheHit(value: value(1), source: .l1))
        f.clock.advance(by: .seconds(1))
        #expect(await f.cache.getUser(profile("u1")) == nil, "expired after userTTL")
        #expect(await f.cache.get([key(1)]) == [CacheHit(value: value(1), source: .l1)], "analysis entries keep their own TTL")
        #expect(f.requests("l1", "hit") == 3)
        #expect(f.requests("l1", "miss") == 1)
    }

    @Test func invalidateUserDeletesTheUsersEntriesInEveryLayerAndCountsThem() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        // Entries in every layer (L1 and the fallback as an older configuration may have left them).
        f.cache.l1.set(profile("u1"), value(1), cost: 10)
        fallback.seed(profile("u1"), value(1))
        remote.seed(profile("u1"), value(1))
        f.cache.l1.set(profile("u2"), value(2), cost: 10)
        fallback.seed(profile("u2"), value(2))
        remote.seed(profile("u2"), value(2))
        f.cache.l1.set(key(1), value(1), cost: 10)

        #expect(await f.cache.invalidateUser("u1") == 3)
        #expect(f.cache.l1.get(profile("u1")) == nil)
        #expect(fallback.value(profile("u1")) == nil)
        #expect(remote.value(profile("u1")) == nil)
        #expect(remote.calls == [.delete(CacheKey.userEntries(of: UserTag("u1")))])
        // Other users and analysis entries stay.
        #expect(f.cache.l1.get(profile("u2")) == value(2) && fallback.value(profile("u2")) == value(2) && remote.value(profile("u2")) == value(2))
        #expect(f.cache.l1.get(key(1)) == value(1))

        #expect(await f.cache.invalidateUser("u1") == 0, "nothing left to delete")
        #expect(await f.cache.invalidateUser("nobody") == 0)
    }

    @Test func invalidateUserWithoutARemoteDeletesFromL1() async throws {
        let f = TieredCacheFixture(remote: false, fallback: false)
        await f.cache.setUser(profile("a:b"), value(1))
        await f.cache.setUser(profile("a"), value(2))
        #expect(await f.cache.invalidateUser("a:b") == 1)
        #expect(await f.cache.getUser(profile("a:b")) == nil)
        #expect(await f.cache.getUser(profile("a")) == CacheHit(value: value(2), source: .l1))
    }

    @Test func aFailedRemoteInvalidationIsRetriedBeforeTheNextRemoteRead() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        await f.cache.setUser(profile("u1"), Array("old profile".utf8))
        remote.failing = true
        #expect(await f.cache.invalidateUser("u1") == 0, "nothing counted: the remote delete failed")
        #expect(remote.value(profile("u1")) == Array("old profile".utf8), "the stale entry is still in L2")

        remote.failing = false
        remote.clearCalls()
        #expect(await f.cache.getUser(profile("u1")) == nil, "the stale profile is never returned")
        #expect(remote.calls == [.delete(CacheKey.userEntries(of: UserTag("u1"))), .get([profile("u1")])])
        #expect(remote.value(profile("u1")) == nil)

        remote.clearCalls()
        _ = await f.cache.getUser(profile("u1"))
        #expect(remote.calls == [.get([profile("u1")])], "a retried invalidation is not repeated")
    }

    @Test func aPendingInvalidationIsFlushedBeforeAFillToo() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        await f.cache.setUser(profile("u1"), Array("old".utf8))
        remote.failing = true
        await f.cache.invalidateUser("u1")
        remote.failing = false
        remote.clearCalls()

        await f.cache.setUser(profile("u1"), Array("new".utf8))
        #expect(remote.calls == [.delete(CacheKey.userEntries(of: UserTag("u1"))), .set([profile("u1")], ttl: TieredCacheFixture.userTTL)])
        #expect(await f.cache.getUser(profile("u1")) == CacheHit(value: Array("new".utf8), source: .l2))
    }

    @Test func aPendingInvalidationSurvivesTheOpenBreakerAndRunsOnTheTrialCall() async throws {
        let f = TieredCacheFixture(breaker: tieredCacheSmallBreaker)
        let remote = try #require(f.remote)
        let breaker = try #require(f.breaker)
        await f.cache.setUser(profile("u1"), Array("old".utf8))
        remote.failing = true
        #expect(await f.cache.invalidateUser("u1") == 0)  // failure 1
        #expect(await f.cache.getUser(profile("u1")) == nil)  // the retry fails: failure 2, the breaker opens
        #expect(breaker.stateValue == 2)

        remote.failing = false
        let callsWhileOpen = remote.calls.count
        #expect(await f.cache.getUser(profile("u1")) == nil, "open: not served, not even from L2")
        #expect(await f.cache.invalidateUser("u1") == 0)
        #expect(remote.calls.count == callsWhileOpen)

        f.clock.advance(by: tieredCacheSmallBreaker.waitDurationInOpenState)
        remote.clearCalls()
        #expect(await f.cache.getUser(profile("u1")) == nil, "the stale profile is deleted before the trial read")
        #expect(remote.calls == [.delete(CacheKey.userEntries(of: UserTag("u1"))), .get([profile("u1")])])
        #expect(breaker.state == .closed)
    }

    /// An invalidation that fails while an earlier pending invalidation of the same user is being
    /// flushed must stay pending: the flush deleted what existed before it, not what was written
    /// (by another instance) between that delete and the later invalidation.
    @Test func anInvalidationFailingDuringAFlushOfTheSameUserStaysPending() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        remote.seed(profile("u1"), Array("v1".utf8))
        remote.failing = true
        await f.cache.invalidateUser("u1")  // write 1: pending
        remote.failing = false

        // A read starts the flush; its delete reaches L2 and its reply is held in flight.
        let gate = TieredCacheGate()
        remote.holdNextDelete(on: gate)
        let cache = f.cache
        let userKey = profile("u1")
        let reader = Task { await cache.getUser(userKey) }
        let deadline = ContinuousClock.now + .seconds(5)
        while !remote.deleteHeld && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
        try #require(remote.deleteHeld)

        // Meanwhile another instance writes v2 to L2, then this instance handles write 2, whose
        // invalidation cannot reach L2, and returns.
        remote.seed(profile("u1"), Array("v2".utf8))
        remote.failing = true
        await f.cache.invalidateUser("u1")
        remote.failing = false

        gate.open()
        _ = await reader.value  // overlapped write 2: may see v2

        // Write 2 returned before this read started: v2 must not be served.
        let after = await f.cache.getUser(profile("u1"))
        #expect(after == nil, "stale entry served after its invalidation returned: \(String(decoding: after?.value ?? [], as: UTF8.self))")
    }

    // MARK: - Metrics

    @Test func metricsCountHitsAndMissesPerLayer() async throws {
        let f = TieredCacheFixture()
        let remote = try #require(f.remote)
        let fallback = try #require(f.fallback)
        f.cache.l1.set(key(0), value(0), cost: 10)
        remote.seed(key(1), value(1))

        _ = await f.cache.get([key(0), key(1), key(2)])
        #expect(f.allRequests == ["l1/hit": 1, "l1/miss": 2, "l2/hit": 1, "l2/miss": 1])

        _ = await f.cache.get([key(0), key(1)])  // both in L1 now
        #expect(f.allRequests == ["l1/hit": 3, "l1/miss": 2, "l2/hit": 1, "l2/miss": 1])

        remote.failing = true
        fallback.seed(key(3), value(3))
        _ = await f.cache.get([key(3), key(4), key(5)])
        #expect(f.allRequests == ["l1/hit": 3, "l1/miss": 5, "l2/hit": 1, "l2/miss": 1, "fallback/hit": 1, "fallback/miss": 2])

        remote.failing = false
        remote.seed(profile("u1"), value(9))
        _ = await f.cache.getUser(profile("u1"))
        _ = await f.cache.getUser(profile("u2"))
        #expect(f.allRequests == ["l1/hit": 3, "l1/miss": 5, "l2/hit": 2, "l2/miss": 2, "fallback/hit": 1, "fallback/miss": 2])
    }

    @Test func metricsWithoutLowerLayersCountOnlyL1() async throws {
        let f = TieredCacheFixture(remote: false, fallback: false)
        await f.cache.set([(key(1), value(1))])
        _ = await f.cache.get([key(1), key(2)])
        await f.cache.setUser(profile("u1"), value(1))
        _ = await f.cache.getUser(profile("u1"))
        _ = await f.cache.getUser(profile("u2"))
        #expect(f.allRequests == ["l1/hit": 2, "l1/miss": 2])
    }
}
