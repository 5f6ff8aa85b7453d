import Soma
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1)))
struct CircuitBreakerTests {
    typealias Transition = CircuitBreakerStateMachine.Transition

    private struct Boom: Error, Equatable {}

    /// Collects what `onTransition` is told.
    private final class TransitionLog: Sendable {
        private let entries = Mutex<[Transition]>([])

        var all: [Transition] { entries.withLock { $0 } }

        func append(_ from: CircuitBreaker.State, _ to: CircuitBreaker.State) {
            entries.withLock { $0.append(Transition(from: from, to: to)) }
        }
    }

    /// A breaker that judges the last two calls (both needed), with a 5 s wait and one trial call.
    private func makeBreaker(
        clock: ManualClock,
        window: Int = 2,
        slowCallRate: Double = 100,
        log: TransitionLog? = nil
    ) -> CircuitBreaker {
        let onTransition: (@Sendable (CircuitBreaker.State, CircuitBreaker.State) -> Void)?
        if let log { onTransition = { log.append($0, $1) } } else { onTransition = nil }
        return CircuitBreaker(
            name: "redis",
            configuration: CircuitBreakerConfiguration(
                slidingWindowSize: window, minimumNumberOfCalls: window,
                slowCallDurationThreshold: .milliseconds(100), slowCallRateThreshold: slowCallRate,
                waitDurationInOpenState: .seconds(5), permittedCallsInHalfOpenState: 1
            ),
            clock: clock,
            onTransition: onTransition
        )
    }

    private func fail(_ breaker: CircuitBreaker, times: Int = 1) async {
        for _ in 0..<times {
            await #expect(throws: Boom.self) { try await breaker.run { () async throws -> Int in throw Boom() } }
        }
    }

    /// Yields until `condition` holds (other tasks make progress meanwhile).
    private func settle(_ what: String, _ condition: () -> Bool) async throws {
        for _ in 0..<10_000 {
            if condition() { return }
            await Task.yield()
        }
        Issue.record("never settled: \(what)")
        throw CancellationError()
    }

    @Test
    func runPassesValuesAndErrorsThrough() async throws {
        let breaker = makeBreaker(clock: ManualClock(), window: 10)
        #expect(try await breaker.run { 42 } == 42)
        #expect(try await breaker.run { "redis" } == "redis")
        await #expect(throws: Boom()) { try await breaker.run { () async throws -> Int in throw Boom() } }
        #expect(breaker.metrics == CircuitBreakerStateMachine.Metrics(calls: 3, failedCalls: 1, slowCalls: 0))
        #expect(breaker.state == .closed)
        #expect(breaker.stateValue == 0)
        #expect(breaker.name == "redis")
    }

    /// Non-Sendable state touched by the body, which runs in the actor's isolation.
    private actor Calls {
        var log: [String] = []

        func make(_ breaker: CircuitBreaker) async throws -> Int {
            try await breaker.run {
                log.append("called")
                return log.count
            }
        }
    }

    @Test
    func theBodyRunsInTheCallersIsolation() async throws {
        let breaker = makeBreaker(clock: ManualClock())
        let calls = Calls()
        #expect(try await calls.make(breaker) == 1)
        #expect(try await calls.make(breaker) == 2)
    }

    @Test
    func openBreakerThrowsWithoutCallingTheBody() async throws {
        let clock = ManualClock()
        let breaker = makeBreaker(clock: clock)
        await fail(breaker, times: 2)
        #expect(breaker.state == .open(since: .zero))
        #expect(breaker.stateValue == 2)

        clock.advance(by: .seconds(2))
        var called = false
        await #expect(throws: CircuitBreakerOpenError(name: "redis", retryAfter: .seconds(3))) {
            try await breaker.run { called = true }
        }
        #expect(!called)
        #expect(breaker.state == .open(since: .zero))
    }

    @Test
    func aBodyThatTakesLongerThanTheSlowThresholdIsSlow() async throws {
        let clock = ManualClock()
        let breaker = makeBreaker(clock: clock, slowCallRate: 50)
        #expect(
            try await breaker.run {
                clock.advance(by: .milliseconds(99)); return 1
            } == 1)
        #expect(breaker.metrics.slowCalls == 0)
        #expect(breaker.state == .closed)
        #expect(
            try await breaker.run {
                clock.advance(by: .milliseconds(150)); return 2
            } == 2)
        #expect(breaker.state == .open(since: .milliseconds(249)), "one slow call in two is 50%")
        #expect(breaker.metrics == CircuitBreakerStateMachine.Metrics(calls: 2, failedCalls: 0, slowCalls: 1))
    }

    @Test
    func cancellationIsNotAFailure() async throws {
        let clock = ManualClock()
        let breaker = makeBreaker(clock: clock)
        for _ in 0..<5 {
            await #expect(throws: CancellationError.self) {
                try await breaker.run { () async throws -> Int in throw CancellationError() }
            }
        }
        #expect(breaker.state == .closed)
        #expect(breaker.metrics.calls == 0)

        // Whatever a cancelled task's call throws is not held against the dependency either.
        let cancelledTask = Task {
            try await breaker.run { () async throws -> Int in
                withUnsafeCurrentTask { $0?.cancel() }
                throw Boom()
            }
        }
        await #expect(throws: Boom.self) { try await cancelledTask.value }
        #expect(breaker.metrics.calls == 0)
    }

    @Test
    func cancellationFreesTheHalfOpenPermit() async throws {
        let clock = ManualClock()
        let breaker = makeBreaker(clock: clock)
        await fail(breaker, times: 2)
        clock.advance(by: .seconds(5))

        // The only trial call is cancelled while it waits on the dependency.
        let trial = Task {
            try await breaker.run { try await clock.sleep(until: clock.now.advanced(by: .seconds(1))) }
        }
        try await settle("the trial call is sleeping") { clock.sleeperCount == 1 }
        #expect(breaker.state == .halfOpen)
        await #expect(throws: CircuitBreakerOpenError(name: "redis", retryAfter: .milliseconds(100))) {
            try await breaker.run { 0 }
        }
        trial.cancel()
        await #expect(throws: CancellationError.self) { try await trial.value }
        #expect(breaker.state == .halfOpen)
        #expect(breaker.metrics.calls == 0)

        // Its permit went back: the next call is the trial, and closes the breaker.
        #expect(try await breaker.run { "ok" } == "ok")
        #expect(breaker.state == .closed)
    }

    @Test
    func onTransitionSeesClosedOpenHalfOpenClosed() async throws {
        let clock = ManualClock()
        let log = TransitionLog()
        let breaker = makeBreaker(clock: clock, log: log)

        await fail(breaker, times: 2)
        #expect(log.all == [Transition(from: .closed, to: .open(since: .zero))])

        clock.advance(by: .seconds(5))
        #expect(try await breaker.run { 7 } == 7)
        #expect(
            log.all == [
                Transition(from: .closed, to: .open(since: .zero)),
                Transition(from: .open(since: .zero), to: .halfOpen),
                Transition(from: .halfOpen, to: .closed),
            ])

        // And the failing trial: closed -> open -> half-open -> open.
        await fail(breaker, times: 2)
        clock.advance(by: .seconds(5))
        await fail(breaker)
        #expect(
            Array(log.all.dropFirst(3)) == [
                Transition(from: .closed, to: .open(since: .seconds(5))),
                Transition(from: .open(since: .seconds(5)), to: .halfOpen),
                Transition(from: .halfOpen, to: .open(since: .seconds(10))),
            ])
        #expect(breaker.stateValue == 2)
    }

    @Test
    func onTransitionRunsOutsideTheLock() async throws {
        let holder = Mutex<CircuitBreaker?>(nil)
        let seen = Mutex<[CircuitBreaker.State]>([])
        let breaker = CircuitBreaker(
            name: "postgres",
            configuration: CircuitBreakerConfiguration(slidingWindowSize: 1, minimumNumberOfCalls: 1),
            clock: ManualClock()
        ) { _, _ in
            // Reading the state takes the breaker's lock: this would deadlock under it.
            guard let breaker = holder.withLock({ $0 }) else { return }
            let state = breaker.state
            seen.withLock { $0.append(state) }
        }
        holder.withLock { $0 = breaker }
        await #expect(throws: Boom.self) { try await breaker.run { () async throws -> Int in throw Boom() } }
        breaker.reset()
        #expect(seen.withLock { $0 } == [.open(since: .zero), .closed])
    }

    @Test
    func forceOpenAndReset() async throws {
        let clock = ManualClock()
        let log = TransitionLog()
        let breaker = makeBreaker(clock: clock, log: log)
        clock.advance(by: .seconds(1))
        breaker.forceOpen()
        #expect(breaker.state == .open(since: .seconds(1)))
        await #expect(throws: CircuitBreakerOpenError(name: "redis", retryAfter: .seconds(5))) {
            try await breaker.run { 0 }
        }
        breaker.reset()
        #expect(breaker.state == .closed)
        #expect(try await breaker.run { 1 } == 1)
        #expect(
            log.all == [
                Transition(from: .closed, to: .open(since: .seconds(1))),
                Transition(from: .open(since: .seconds(1)), to: .closed),
            ])
    }
}
