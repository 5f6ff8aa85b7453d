// Over 500 lines on purpose: every behaviour the async wrapper adds to the admission machine
// (wake-ups, ordering, cancellation, expiry) on one manual clock and one set of helpers (below and in
// Support/Settle.swift). Timeline, a type of its own, is tested in TimelineTests.
import Soma
import Synchronization
import Testing

/// Tests of the async wrapper `SessionManager`: continuations, ordering, wake-ups, cancellation and
/// expiry through the injected clock. The admission policy itself is tested on the pure machine in
/// `AdmissionStateMachineTests`; here only what the wrapper adds is checked.
///
/// No test sleeps to see time pass: time moves with `ManualClock.advance(by:)`, and state another
/// task changes is awaited by bounded polling of the manager's introspection (`settle`).
@Suite(.timeLimit(.minutes(1)))
struct SessionManagerTests {
    private static let far = Duration.seconds(3_600)

    private func makeManager(
        workers: Int = 1,
        maxInFlight: Int = 256,
        maxQueued: Int = 256,
        policy: TierPolicy = TierPolicy(),
        clock: ManualClock
    ) -> SessionManager {
        SessionManager(
            configuration: AdmissionConfiguration(
                workers: workers, maxInFlight: maxInFlight, maxQueued: maxQueued, policy: policy
            ),
            clock: clock
        )
    }

    // MARK: 1. Immediate run, pass-through, release

    @Test
    func requestRunsAtOnceWhenAWorkerIsFreeAndReturnsTheBodysValue() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 2, clock: clock)

        let value = try await sessions.withAdmission(user: "u1", tier: .standard, deadline: sessions.now() + Self.far) {
            #expect(sessions.runningCount == 1)
            #expect(sessions.inFlight(user: "u1") == 1)
            #expect(sessions.queuedCount == 0)
            return 42
        }

        #expect(value == 42)
        #expect(sessions.runningCount == 0)
        #expect(sessions.inFlight(user: "u1") == 0)
        // It never queued, so it never slept on the clock.
        #expect(clock.sleeperCount == 0)
    }

    @Test
    func bodysErrorPassesThroughAndTheSlotIsReleased() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)

        await #expect(throws: BodyError.self) {
            try await sessions.withAdmission(user: "u1", tier: .free, deadline: sessions.now() + Self.far) {
                #expect(sessions.runningCount == 1)
                throw BodyError()
            }
        }
        #expect(sessions.runningCount == 0)
        #expect(sessions.inFlight(user: "u1") == 0)

        // The single worker is free again: the next request runs at once, not queued.
        let again = try await sessions.withAdmission(user: "u1", tier: .free, deadline: sessions.now() + Self.far) { "again" }
        #expect(again == "again")
        #expect(sessions.runningCount == 0)
        #expect(sessions.queuedCount == 0)
    }

    @Test
    func serviceTimeIsMeasuredOnTheManagersClock() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        #expect(sessions.estimatedServiceTime == .milliseconds(10))

        try await sessions.withAdmission(user: "u1", tier: .free, deadline: sessions.now() + Self.far) {
            clock.advance(by: .milliseconds(50))
        }

        // Moving average with the default smoothing 0.2: 10 ms * 0.8 + 50 ms * 0.2 = 18 ms.
        let estimate = sessions.estimatedServiceTime
        #expect(estimate > .microseconds(17_999) && estimate < .microseconds(18_001), "estimate \(estimate)")
    }

    // MARK: 2. Ordering of waiters

    @Test
    func waitersRunPremiumThenStandardThenFree() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .free, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }

        var waiters: [Submitted] = []
        for (name, tier) in [("free", Tier.free), ("standard", .standard), ("premium", .premium)] {
            waiters.append(submit(sessions, user: name, tier: tier, starts: starts))
            try await settle("\(name) queued") { sessions.queuedCount(tier: tier) == 1 }
        }
        #expect(sessions.queuedCount == 3)
        #expect(starts.value == ["holder"])

        gate.open()
        #expect(try await holder.outcome() == .ran)
        for waiter in waiters { #expect(try await waiter.outcome() == .ran) }

        #expect(starts.value == ["holder", "premium", "standard", "free"])
        #expect(sessions.runningCount == 0)
        #expect(sessions.queuedCount == 0)
        #expect(clock.sleeperCount == 0)
    }

    @Test
    func waitersOfOneTierRunInArrivalOrder() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .premium, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }

        let arrivals: [(String, Tier)] = [
            ("free1", .free), ("standard1", .standard), ("premium1", .premium),
            ("free2", .free), ("standard2", .standard), ("premium2", .premium),
            ("standard3", .standard),
        ]
        var waiters: [Submitted] = []
        for (name, tier) in arrivals {
            let before = sessions.queuedCount(tier: tier)
            waiters.append(submit(sessions, user: name, tier: tier, starts: starts))
            try await settle("\(name) queued") { sessions.queuedCount(tier: tier) == before + 1 }
        }
        #expect(sessions.queuedCount == arrivals.count)

        gate.open()
        #expect(try await holder.outcome() == .ran)
        for waiter in waiters { #expect(try await waiter.outcome() == .ran) }

        #expect(
            starts.value == [
                "holder", "premium1", "premium2", "standard1", "standard2", "standard3", "free1", "free2",
            ])
        #expect(sessions.runningCount == 0)
        #expect(sessions.queuedCount == 0)
    }

    // MARK: 3. Expiry through the clock

    @Test
    func waiterExpiresAtItsDeadlineWithoutTheHolderFinishing() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .premium, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }

        let waiter = submit(sessions, user: "w", tier: .free, deadline: sessions.now() + .milliseconds(100), starts: starts)
        try await settle("waiter queued and sleeping until its deadline") {
            sessions.queuedCount == 1 && clock.sleeperCount == 1
        }

        // Just before the deadline nothing happens.
        clock.advance(by: .milliseconds(99))
        for _ in 0..<20 { await Task.yield() }
        #expect(waiter.current == nil)
        #expect(sessions.queuedCount == 1)

        clock.advance(by: .milliseconds(1))
        #expect(try await waiter.outcome() == .refused(AdmissionRefusal(.expired, retryAfter: .zero)))
        #expect(sessions.queuedCount == 0)
        #expect(sessions.inFlight(user: "w") == 0)
        #expect(clock.sleeperCount == 0)
        // The holder is still running: the expiry came from the clock, not from a finish.
        #expect(sessions.runningCount == 1)
        #expect(holder.current == nil)

        gate.open()
        #expect(try await holder.outcome() == .ran)
        #expect(starts.value == ["holder"])
        #expect(sessions.runningCount == 0)
    }

    @Test
    func expiryLeavesAWaiterWithALaterDeadlineQueued() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .premium, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }

        // The short one is premium, so it is at the head of the queue in front of the long one.
        let short = submit(sessions, user: "short", tier: .premium, deadline: sessions.now() + .milliseconds(100), starts: starts)
        try await settle("short queued") { sessions.queuedCount(tier: .premium) == 1 }
        let long = submit(sessions, user: "long", tier: .standard, deadline: sessions.now() + .seconds(10), starts: starts)
        try await settle("both queued and sleeping") { sessions.queuedCount == 2 && clock.sleeperCount == 2 }

        clock.advance(by: .milliseconds(100))
        #expect(try await short.outcome() == .refused(AdmissionRefusal(.expired, retryAfter: .zero)))
        #expect(sessions.queuedCount == 1)
        #expect(sessions.queuedCount(tier: .premium) == 0)
        #expect(sessions.queuedCount(tier: .standard) == 1)
        #expect(sessions.inFlight(user: "short") == 0)
        #expect(sessions.inFlight(user: "long") == 1)
        #expect(clock.sleeperCount == 1)
        #expect(long.current == nil)

        gate.open()
        #expect(try await holder.outcome() == .ran)
        #expect(try await long.outcome() == .ran)
        #expect(starts.value == ["holder", "long"])
        #expect(sessions.runningCount == 0)
        #expect(sessions.queuedCount == 0)
        #expect(clock.sleeperCount == 0)
    }

    // MARK: 4. Shedding

    @Test
    func premiumArrivingAtAFullQueueShedsTheQueuedFreeRequest() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, maxQueued: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .standard, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }
        let free = submit(sessions, user: "free", tier: .free, starts: starts)
        try await settle("free queued") { sessions.queuedCount(tier: .free) == 1 }

        let premium = submit(sessions, user: "premium", tier: .premium, starts: starts)

        let shed = try await free.outcome()
        guard case .refused(let refusal) = shed else {
            Issue.record("the free request should have been shed, got \(shed)")
            return
        }
        #expect(refusal.reason == .shed)
        #expect(refusal.retryAfter >= sessions.configuration.minimumRetryAfter)
        try await settle("premium queued in the free one's place") { sessions.queuedCount(tier: .premium) == 1 }
        #expect(sessions.queuedCount == 1)
        #expect(sessions.queuedCount(tier: .free) == 0)
        #expect(sessions.inFlight(user: "free") == 0)
        #expect(starts.value == ["holder"])

        gate.open()
        #expect(try await holder.outcome() == .ran)
        #expect(try await premium.outcome() == .ran)
        #expect(starts.value == ["holder", "premium"])
        #expect(sessions.runningCount == 0)
        #expect(sessions.queuedCount == 0)
        #expect(clock.sleeperCount == 0)
    }

    // MARK: 5. Refusal at arrival

    @Test
    func fullQueueWithNoLowerTierToShedIsOverloaded() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, maxQueued: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .free, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }
        let queued = submit(sessions, user: "queued", tier: .premium, starts: starts)
        try await settle("premium queued") { sessions.queuedCount == 1 }

        // Neither a lower nor an equal tier may displace the queued premium request.
        for tier in [Tier.free, .standard, .premium] {
            let refusal = await #expect(throws: AdmissionRefusal.self) {
                try await sessions.withAdmission(user: "late-\(tier)", tier: tier, deadline: sessions.now() + Self.far) {
                    Issue.record("a refused request must not run")
                }
            }
            #expect(refusal?.reason == .overloaded)
            #expect((refusal?.retryAfter ?? .zero) >= sessions.configuration.minimumRetryAfter)
            #expect(sessions.inFlight(user: "late-\(tier)") == 0)
        }
        #expect(sessions.queuedCount == 1)
        #expect(sessions.runningCount == 1)

        gate.open()
        #expect(try await holder.outcome() == .ran)
        #expect(try await queued.outcome() == .ran)
        #expect(starts.value == ["holder", "queued"])
    }

    @Test
    func userOverTheirTiersInFlightCapIsRefusedWithUserConcurrency() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()
        let cap = TierPolicy()[.free].maxInFlightPerUser
        #expect(cap == 2)

        // User "u" fills their free-tier cap: one running, one waiting.
        let running = submit(sessions, user: "u", tier: .free, starts: starts, hold: gate)
        try await settle("first runs") { sessions.runningCount == 1 }
        let waiting = submit(sessions, user: "u", tier: .free, starts: starts)
        try await settle("second queued") { sessions.queuedCount == 1 }
        #expect(sessions.inFlight(user: "u") == cap)

        let refusal = await #expect(throws: AdmissionRefusal.self) {
            try await sessions.withAdmission(user: "u", tier: .free, deadline: sessions.now() + Self.far) {
                Issue.record("a refused request must not run")
            }
        }
        #expect(refusal?.reason == .userConcurrency)
        #expect((refusal?.retryAfter ?? .zero) >= sessions.configuration.minimumRetryAfter)
        #expect(sessions.inFlight(user: "u") == cap)

        // The cap is per user: another free user still gets a place in the queue.
        let other = submit(sessions, user: "v", tier: .free, starts: starts)
        try await settle("other user queued") { sessions.queuedCount == 2 }

        gate.open()
        for request in [running, waiting, other] { #expect(try await request.outcome() == .ran) }
        #expect(sessions.inFlight(user: "u") == 0)
        #expect(sessions.runningCount == 0)
    }

    /// The machine says `.deadlineUnreachable`; the wrapper reports it as `.overloaded` (HTTP 503).
    @Test
    func deadlineAlreadyPassedIsRefusedAsOverloaded() async throws {
        let clock = ManualClock()
        clock.advance(by: .seconds(5))
        let sessions = makeManager(workers: 1, clock: clock)
        clock.advance(by: .seconds(1))
        #expect(sessions.now() == .seconds(1))

        // A worker is free, yet a request whose deadline is now or earlier does not run.
        for deadline in [sessions.now(), sessions.now() - .milliseconds(1), Duration.zero] {
            let refusal = await #expect(throws: AdmissionRefusal.self) {
                try await sessions.withAdmission(user: "u", tier: .premium, deadline: deadline) {
                    Issue.record("a request past its deadline must not run")
                }
            }
            #expect(refusal?.reason == .overloaded)
            #expect((refusal?.retryAfter ?? .zero) >= sessions.configuration.minimumRetryAfter)
        }
        #expect(sessions.runningCount == 0)
        #expect(sessions.inFlight(user: "u") == 0)
        #expect(clock.sleeperCount == 0)
    }

    /// A wait for a worker that would pass the deadline is refused at arrival, also as `.overloaded`.
    @Test
    func deadlineUnreachableByTheExpectedWaitIsRefusedAsOverloaded() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .free, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }

        // Expected: one service (10 ms) before a worker frees, plus its own 10 ms > 15 ms.
        let refusal = await #expect(throws: AdmissionRefusal.self) {
            try await sessions.withAdmission(user: "u", tier: .premium, deadline: sessions.now() + .milliseconds(15)) {
                Issue.record("a refused request must not run")
            }
        }
        #expect(refusal?.reason == .overloaded)
        #expect(sessions.queuedCount == 0)
        #expect(sessions.inFlight(user: "u") == 0)

        gate.open()
        #expect(try await holder.outcome() == .ran)
    }

    // MARK: 6. Cancellation

    @Test
    func cancellingAQueuedRequestRemovesItAndTheNextStillRuns() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .free, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }
        let first = submit(sessions, user: "a", tier: .premium, starts: starts)
        try await settle("a queued") { sessions.queuedCount == 1 }
        let second = submit(sessions, user: "b", tier: .standard, starts: starts)
        try await settle("both queued and sleeping") { sessions.queuedCount == 2 && clock.sleeperCount == 2 }

        first.task.cancel()
        #expect(try await first.outcome() == .cancelled)
        #expect(sessions.queuedCount == 1)
        #expect(sessions.queuedCount(tier: .premium) == 0)
        #expect(sessions.inFlight(user: "a") == 0)
        #expect(sessions.inFlight(user: "b") == 1)
        #expect(sessions.runningCount == 1)
        #expect(clock.sleeperCount == 1)

        gate.open()
        #expect(try await holder.outcome() == .ran)
        #expect(try await second.outcome() == .ran)
        #expect(starts.value == ["holder", "b"])
        #expect(sessions.runningCount == 0)
        #expect(sessions.queuedCount == 0)
        #expect(clock.sleeperCount == 0)
    }

    @Test
    func taskCancelledBeforeItQueuesLeavesNothingBehind() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        let holder = submit(sessions, user: "holder", tier: .free, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }

        let deadline = sessions.now() + Self.far
        let cancelled = Task { () -> Outcome in
            withUnsafeCurrentTask { $0?.cancel() }
            return await outcome {
                try await sessions.withAdmission(user: "c", tier: .premium, deadline: deadline) {
                    starts.withLock { $0.append("c") }
                }
            }
        }
        #expect(await cancelled.value == .cancelled)
        #expect(sessions.queuedCount == 0)
        #expect(sessions.inFlight(user: "c") == 0)
        #expect(clock.sleeperCount == 0)

        let next = submit(sessions, user: "n", tier: .free, starts: starts)
        try await settle("next queued") { sessions.queuedCount == 1 }
        gate.open()
        #expect(try await holder.outcome() == .ran)
        #expect(try await next.outcome() == .ran)
        #expect(starts.value == ["holder", "n"])
        #expect(sessions.runningCount == 0)
    }

    @Test
    func cancellingARunningRequestFreesTheSlotOnlyWhenItsBodyReturns() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])
        let gate = Latch()

        // The body ignores cancellation: it holds the slot until the gate opens.
        let holder = submit(sessions, user: "holder", tier: .free, starts: starts, hold: gate)
        try await settle("holder runs") { sessions.runningCount == 1 }
        let waiter = submit(sessions, user: "w", tier: .free, starts: starts)
        try await settle("waiter queued") { sessions.queuedCount == 1 }

        holder.task.cancel()
        for _ in 0..<20 { await Task.yield() }
        #expect(sessions.runningCount == 1)
        #expect(sessions.inFlight(user: "holder") == 1)
        #expect(sessions.queuedCount == 1)
        #expect(starts.value == ["holder"])

        gate.open()
        // Its body returned normally, so the cancelled request still counts as run.
        #expect(try await holder.outcome() == .ran)
        #expect(try await waiter.outcome() == .ran)
        #expect(starts.value == ["holder", "w"])
        #expect(sessions.runningCount == 0)
        #expect(sessions.inFlight(user: "holder") == 0)
        #expect(sessions.queuedCount == 0)
    }

    @Test
    func runningBodyThatHonoursCancellationFreesItsSlotAndItsErrorPassesThrough() async throws {
        let clock = ManualClock()
        let sessions = makeManager(workers: 1, clock: clock)
        let starts = Locked<[String]>([])

        let deadline = sessions.now() + Self.far
        // The body sleeps on the manual clock, which nobody advances: only cancellation ends it.
        let holder = Task { () -> Outcome in
            await outcome {
                try await sessions.withAdmission(user: "holder", tier: .free, deadline: deadline) {
                    starts.withLock { $0.append("holder") }
                    try await clock.sleep(until: clock.now.advanced(by: Self.far))
                }
            }
        }
        try await settle("holder runs and sleeps") { sessions.runningCount == 1 && clock.sleeperCount == 1 }
        let waiter = submit(sessions, user: "w", tier: .free, starts: starts)
        try await settle("waiter queued") { sessions.queuedCount == 1 && clock.sleeperCount == 2 }

        holder.cancel()
        #expect(await holder.value == .cancelled)
        #expect(try await waiter.outcome() == .ran)
        #expect(starts.value == ["holder", "w"])
        #expect(sessions.runningCount == 0)
        #expect(sessions.inFlight(user: "holder") == 0)
        #expect(sessions.queuedCount == 0)
        #expect(clock.sleeperCount == 0)
    }

    // MARK: 7. Churn

    @Test
    func manyRequestsUnderChurnAllCompleteWithinTheWorkerBound() async throws {
        var policy = TierPolicy()
        for tier in Tier.allCases { policy[tier].maxInFlightPerUser = 1_000 }
        let workers = 2
        let sessions = SessionManager(
            configuration: AdmissionConfiguration(workers: workers, policy: policy),
            clock: ContinuousClock()
        )
        let concurrency = Locked<(current: Int, peak: Int, ran: Int, slotOverrun: Bool)>((0, 0, 0, false))
        let deadline = sessions.now() + .seconds(600)

        let outcomes = await withTaskGroup(of: Outcome.self, returning: [Outcome].self) { group in
            for i in 0..<200 {
                let userIndex = i % 20
                let user = "user\(userIndex)"
                let tier = Tier.allCases[userIndex % Tier.allCases.count]
                group.addTask {
                    await outcome {
                        try await sessions.withAdmission(user: user, tier: tier, deadline: deadline) {
                            concurrency.withLock {
                                $0.current += 1
                                $0.peak = max($0.peak, $0.current)
                                $0.ran += 1
                            }
                            if sessions.runningCount > workers { concurrency.withLock { $0.slotOverrun = true } }
                            await Task.yield()
                            await Task.yield()
                            concurrency.withLock { $0.current -= 1 }
                        }
                    }
                }
            }
            var outcomes: [Outcome] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }

        #expect(outcomes.count == 200)
        #expect(outcomes.filter { $0 != .ran }.isEmpty, "not run: \(outcomes.filter { $0 != .ran })")
        let observed = concurrency.value
        #expect(observed.ran == 200)
        #expect(observed.peak >= 1 && observed.peak <= workers)
        #expect(!observed.slotOverrun)
        #expect(sessions.runningCount == 0)
        #expect(sessions.queuedCount == 0)
        for userIndex in 0..<20 { #expect(sessions.inFlight(user: "user\(userIndex)") == 0) }
    }
}

// MARK: - Helpers

private struct BodyError: Error {}

/// How one `withAdmission` call ended.
private enum Outcome: Sendable, Equatable {
    case ran
    case refused(AdmissionRefusal)
    case cancelled
    case failed(String)
}

/// Runs `operation`, classifying how it ended.
private func outcome(_ operation: () async throws -> Void) async -> Outcome {
    do {
        try await operation()
        return .ran
    } catch let refusal as AdmissionRefusal {
        return .refused(refusal)
    } catch is CancellationError {
        return .cancelled
    } catch {
        return .failed("\(error)")
    }
}

/// A one-shot latch: `wait()` suspends until `open()` (and returns at once afterwards). It ignores
/// cancellation on purpose, so a body blocked on it holds its worker slot until the test says so.
private final class Latch: Sendable {
    private struct State {
        var open = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.open = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// A request sent on its own task; its outcome is recorded when `withAdmission` returns or throws.
private struct Submitted: Sendable {
    let task: Task<Void, Never>
    let result: Locked<Outcome?>

    /// The outcome so far: `nil` while the request waits or runs.
    var current: Outcome? { result.value }

    /// Waits (bounded) until the request has ended, and returns how.
    func outcome() async throws -> Outcome {
        try await settle("request to end") { result.value != nil }
        return result.value ?? .failed("no outcome")
    }
}

/// Sends a request on a new task. Its body appends `user` to `starts` when it starts and then
/// waits on `hold`, if any.
private func submit(
    _ sessions: SessionManager,
    user: String,
    tier: Tier,
    deadline: Duration? = nil,
    starts: Locked<[String]>,
    hold: Latch? = nil
) -> Submitted {
    let deadline = deadline ?? sessions.now() + .seconds(3_600)
    let result = Locked<Outcome?>(nil)
    let task = Task {
        let ended = await outcome {
            try await sessions.withAdmission(user: user, tier: tier, deadline: deadline) {
                starts.withLock { $0.append(user) }
                await hold?.wait()
            }
        }
        result.withLock { $0 = ended }
    }
    return Submitted(task: task, result: result)
}
