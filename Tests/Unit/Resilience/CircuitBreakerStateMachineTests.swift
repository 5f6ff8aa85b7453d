import Soma
import Testing

@Suite(.timeLimit(.minutes(1)))
struct CircuitBreakerStateMachineTests {
    typealias Machine = CircuitBreakerStateMachine
    typealias Transition = Machine.Transition

    private static let fast = Duration.milliseconds(1)
    private static let slow = Duration.milliseconds(100)

    private func makeMachine(
        window: Int = 10,
        minimumCalls: Int = 10,
        failureRate: Double = 50,
        slowCallRate: Double = 100,
        wait: Duration = .seconds(5),
        trials: Int = 3,
        maxHalfOpenWait: Duration = .zero
    ) -> Machine {
        Machine(
            configuration: CircuitBreakerConfiguration(
                slidingWindowSize: window, minimumNumberOfCalls: minimumCalls,
                failureRateThreshold: failureRate, slowCallDurationThreshold: Self.slow,
                slowCallRateThreshold: slowCallRate, waitDurationInOpenState: wait,
                permittedCallsInHalfOpenState: trials, maxWaitDurationInHalfOpenState: maxHalfOpenWait
            ))
    }

    /// Acquires a permit (which must be granted) and records `outcome`; returns every transition.
    @discardableResult
    private func call(
        _ machine: inout Machine, _ outcome: Machine.Outcome, duration: Duration = fast, at now: Duration = .zero,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> [Transition] {
        let acquisition = machine.tryAcquire(now: now)
        guard let permit = acquisition.permission.permit else {
            Issue.record("call at \(now) rejected: \(acquisition.permission)", sourceLocation: sourceLocation)
            return acquisition.transitions
        }
        return acquisition.transitions + machine.record(outcome, duration: duration, permit: permit, now: now + duration)
    }

    /// Drives a fresh machine to OPEN at `.zero` with ten failures (the last call opens it).
    private func opened(_ machine: inout Machine) {
        for _ in 0..<10 { call(&machine, .failure, duration: .zero) }
        #expect(machine.state == .open(since: .zero))
    }

    /// Takes a permit that must be granted.
    private func permit(
        _ machine: inout Machine, at now: Duration, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Machine.Permit {
        try #require(machine.tryAcquire(now: now).permission.permit, sourceLocation: sourceLocation)
    }

    // MARK: Configuration

    @Test
    func defaultsFollowTheBrief() {
        let configuration = CircuitBreakerConfiguration()
        #expect(configuration.slidingWindowSize == 20)
        #expect(configuration.minimumNumberOfCalls == 10)
        #expect(configuration.failureRateThreshold == 50)
        #expect(configuration.slowCallDurationThreshold == .milliseconds(100))
        #expect(configuration.slowCallRateThreshold == 100)
        #expect(configuration.waitDurationInOpenState == .seconds(5))
        #expect(configuration.permittedCallsInHalfOpenState == 3)
        #expect(configuration.maxWaitDurationInHalfOpenState == .zero)
        #expect(Machine().state == .closed)
    }

    @Test
    func stateValuesForTheGauge() {
        #expect(Machine.State.closed.stateValue == 0)
        #expect(Machine.State.halfOpen.stateValue == 1)
        #expect(Machine.State.open(since: .seconds(3)).stateValue == 2)
    }

    // MARK: CLOSED

    @Test
    func staysClosedBelowTheMinimumNumberOfCallsEvenWhenEveryCallFails() {
        var machine = makeMachine()
        for _ in 0..<9 { #expect(call(&machine, .failure) == []) }
        #expect(machine.state == .closed)
        #expect(machine.metrics.failureRate == 100)
        #expect(machine.metrics.calls == 9)
    }

    @Test
    func opensAtExactlyTheFailureRateThreshold() {
        var machine = makeMachine()
        for _ in 0..<5 { #expect(call(&machine, .success) == []) }
        for _ in 0..<4 { #expect(call(&machine, .failure) == []) }
        #expect(machine.state == .closed)
        // The tenth call: 5 failures of 10 = 50%.
        #expect(
            call(&machine, .failure, at: .seconds(2)) == [
                Transition(from: .closed, to: .open(since: .seconds(2) + Self.fast))
            ])
        #expect(machine.state == .open(since: .seconds(2) + Self.fast))
        #expect(machine.metrics == Machine.Metrics(calls: 10, failedCalls: 5, slowCalls: 0))
    }

    @Test
    func doesNotOpenAtFourFailuresInTen() {
        var machine = makeMachine()
        for _ in 0..<6 { call(&machine, .success) }
        for _ in 0..<4 { #expect(call(&machine, .failure) == []) }
        #expect(machine.state == .closed)
        #expect(machine.metrics.failureRate == 40)
    }

    @Test
    func slidingWindowDropsOldOutcomes() {
        // 60% so that 5 failures in 10 calls do not open it on the way.
        var machine = makeMachine(window: 10, failureRate: 60)
        for _ in 0..<5 { call(&machine, .failure) }
        for _ in 0..<10 { call(&machine, .success) }
        #expect(machine.state == .closed)
        #expect(machine.metrics == Machine.Metrics(calls: 10, failedCalls: 0, slowCalls: 0))
        #expect(machine.metrics.failureRate == 0)

        // The five old failures are gone: it takes six new ones in ten to reach 60%.
        for _ in 0..<5 { #expect(call(&machine, .failure) == []) }
        #expect(machine.metrics.failureRate == 50)
        #expect(call(&machine, .failure).map(\.to) == [.open(since: Self.fast)])
    }

    @Test
    func minimumNumberOfCallsIsCappedAtTheWindowSize() {
        var machine = makeMachine(window: 4, minimumCalls: 10)
        for _ in 0..<3 { call(&machine, .failure) }
        #expect(machine.state == .closed)
        #expect(call(&machine, .failure).map(\.to) == [.open(since: Self.fast)])
    }

    @Test
    func slowCallsOpenItWhenTheSlowThresholdIsLoweredEvenIfAllSucceed() {
        var machine = makeMachine(slowCallRate: 50)
        for _ in 0..<5 { call(&machine, .success) }
        for _ in 0..<4 { call(&machine, .success, duration: Self.slow) }
        #expect(machine.state == .closed)
        #expect(call(&machine, .success, duration: .seconds(1)).map(\.to) == [.open(since: .seconds(1))])
        #expect(machine.metrics == Machine.Metrics(calls: 10, failedCalls: 0, slowCalls: 5))
    }

    @Test
    func slowMeansAtLeastTheThresholdSuccessOrNot() {
        var machine = makeMachine()
        call(&machine, .success, duration: Self.slow - .nanoseconds(1))
        call(&machine, .success, duration: Self.slow)
        call(&machine, .failure, duration: Self.slow * 2)
        #expect(machine.metrics == Machine.Metrics(calls: 3, failedCalls: 1, slowCalls: 2))
    }

    @Test
    func withTheDefaultSlowRateOnlyAWindowOfSlowCallsOpensIt() {
        var machine = makeMachine()
        call(&machine, .success)
        for _ in 0..<9 { call(&machine, .success, duration: Self.slow) }
        #expect(machine.state == .closed, "90% slow is under 100%")
        #expect(call(&machine, .success, duration: Self.slow).map(\.to) == [.open(since: Self.slow)])
    }

    // MARK: OPEN

    @Test
    func openRejectsWithTheRemainingWait() {
        var machine = makeMachine()
        opened(&machine)
        #expect(machine.tryAcquire(now: .zero) == Machine.Acquisition(permission: .rejected(retryAfter: .seconds(5)), transitions: []))
        #expect(machine.tryAcquire(now: .seconds(2)).permission == .rejected(retryAfter: .seconds(3)))
        #expect(machine.tryAcquire(now: .seconds(5) - .milliseconds(1)).permission == .rejected(retryAfter: .milliseconds(1)))
        #expect(machine.state == .open(since: .zero))
    }

    // MARK: HALF_OPEN

    @Test
    func afterTheWaitHalfOpenPermitsExactlyTheTrialCalls() {
        var machine = makeMachine(trials: 3)
        opened(&machine)
        let first = machine.tryAcquire(now: .seconds(5))
        #expect(first.transitions == [Transition(from: .open(since: .zero), to: .halfOpen)])
        #expect(first.permission.permit != nil)
        #expect(machine.state == .halfOpen)
        #expect(machine.tryAcquire(now: .seconds(5)).permission.permit != nil)
        #expect(machine.tryAcquire(now: .seconds(6)).permission.permit != nil)
        #expect(machine.availableTrialPermits == 0)
        #expect(
            machine.tryAcquire(now: .seconds(6))
                == Machine.Acquisition(
                    permission: .rejected(retryAfter: Self.slow), transitions: []
                ))
        #expect(machine.state == .halfOpen)
    }

    @Test
    func trialPermitsDoNotComeBackWhenTrialCallsEnd() throws {
        var machine = makeMachine(trials: 2)
        opened(&machine)
        let first = try permit(&machine, at: .seconds(5))
        #expect(machine.record(.success, duration: Self.fast, permit: first, now: .seconds(5)) == [])
        _ = try permit(&machine, at: .seconds(5))
        #expect(machine.tryAcquire(now: .seconds(5)).permission == .rejected(retryAfter: Self.slow))
    }

    @Test
    func halfOpenSuccessClosesWithACleanWindow() throws {
        var machine = makeMachine(trials: 3)
        opened(&machine)
        let permits = try (0..<3).map { _ in try permit(&machine, at: .seconds(5)) }
        // One failure in three (33%) is under 50%; the decision waits for the last trial.
        #expect(machine.record(.failure, duration: Self.fast, permit: permits[0], now: .seconds(6)) == [])
        #expect(machine.record(.success, duration: Self.fast, permit: permits[1], now: .seconds(6)) == [])
        #expect(machine.state == .halfOpen)
        #expect(
            machine.record(.success, duration: Self.fast, permit: permits[2], now: .seconds(6)) == [
                Transition(from: .halfOpen, to: .closed)
            ])
        #expect(machine.state == .closed)
        #expect(machine.metrics == Machine.Metrics(calls: 0, failedCalls: 0, slowCalls: 0))

        // The ten failures that opened it are forgotten: one more failure does not reopen it.
        #expect(call(&machine, .failure, at: .seconds(7)) == [])
        #expect(machine.state == .closed)
        #expect(machine.metrics.calls == 1)
    }

    @Test
    func halfOpenFailureReopensWithANewFullWait() throws {
        var machine = makeMachine(trials: 3)
        opened(&machine)
        let permits = try (0..<3).map { _ in try permit(&machine, at: .seconds(5)) }
        machine.record(.failure, duration: Self.fast, permit: permits[0], now: .seconds(6))
        machine.record(.success, duration: Self.fast, permit: permits[1], now: .seconds(6))
        #expect(
            machine.record(.failure, duration: Self.fast, permit: permits[2], now: .seconds(7)) == [
                Transition(from: .halfOpen, to: .open(since: .seconds(7)))
            ])
        #expect(machine.metrics == Machine.Metrics(calls: 3, failedCalls: 2, slowCalls: 0))
        #expect(machine.tryAcquire(now: .seconds(7)).permission == .rejected(retryAfter: .seconds(5)))
        #expect(machine.tryAcquire(now: .seconds(11)).permission == .rejected(retryAfter: .seconds(1)))
        #expect(machine.tryAcquire(now: .seconds(12)).transitions.map(\.to) == [.halfOpen])
    }

    @Test
    func halfOpenSlowTrialCallsReopenIt() throws {
        var machine = makeMachine(slowCallRate: 50, trials: 2)
        opened(&machine)
        let permits = try (0..<2).map { _ in try permit(&machine, at: .seconds(5)) }
        machine.record(.success, duration: Self.fast, permit: permits[0], now: .seconds(5))
        #expect(
            machine.record(.success, duration: Self.slow, permit: permits[1], now: .seconds(6)) == [
                Transition(from: .halfOpen, to: .open(since: .seconds(6)))
            ])
        #expect(machine.metrics == Machine.Metrics(calls: 2, failedCalls: 0, slowCalls: 1))
    }

    @Test
    func releasedTrialPermitGoesToAnotherCall() throws {
        var machine = makeMachine(trials: 1)
        opened(&machine)
        let cancelled = try permit(&machine, at: .seconds(5))
        #expect(machine.tryAcquire(now: .seconds(5)).permission == .rejected(retryAfter: Self.slow))
        #expect(machine.release(cancelled, now: .seconds(5)) == [])
        #expect(machine.state == .halfOpen)
        #expect(machine.metrics.calls == 0, "a cancelled call counts neither way")
        let next = try permit(&machine, at: .seconds(5))
        #expect(machine.record(.success, duration: Self.fast, permit: next, now: .seconds(5)).map(\.to) == [.closed])
        // Handing the released permit back again changes nothing.
        #expect(machine.release(cancelled, now: .seconds(6)) == [])
        #expect(machine.state == .closed)
    }

    @Test
    func outcomesFromBeforeTheLastTransitionAreIgnored() throws {
        var machine = makeMachine(trials: 1)
        let straggler = try permit(&machine, at: .zero)
        let releasedStraggler = try permit(&machine, at: .zero)
        opened(&machine)
        let trial = try permit(&machine, at: .seconds(5))

        // A slow call permitted while CLOSED ends during the trial: it is not a trial result ...
        #expect(machine.record(.success, duration: .seconds(5), permit: straggler, now: .seconds(5)) == [])
        #expect(machine.state == .halfOpen)
        #expect(machine.metrics.calls == 0)
        // ... and its cancellation frees no trial permit.
        #expect(machine.release(releasedStraggler, now: .seconds(5)) == [])
        #expect(machine.tryAcquire(now: .seconds(5)).permission == .rejected(retryAfter: Self.slow))

        #expect(
            machine.record(.failure, duration: Self.fast, permit: trial, now: .seconds(5)).map(\.to) == [
                .open(since: .seconds(5))
            ])
    }

    @Test
    func halfOpenThatOutlivesItsMaximumWaitOpensAgain() throws {
        var machine = makeMachine(wait: .seconds(5), trials: 2, maxHalfOpenWait: .seconds(1))
        opened(&machine)
        let hung = try permit(&machine, at: .seconds(5))
        #expect(machine.state == .halfOpen)

        // Checked on the next event, dated when the maximum wait ran out.
        #expect(
            machine.tryAcquire(now: .seconds(7))
                == Machine.Acquisition(
                    permission: .rejected(retryAfter: .seconds(4)),
                    transitions: [Transition(from: .halfOpen, to: .open(since: .seconds(6)))]
                ))
        // The hung trial call ends late: too late to count.
        #expect(machine.record(.success, duration: .seconds(3), permit: hung, now: .seconds(8)) == [])
        #expect(machine.state == .open(since: .seconds(6)))

        // Next trial; long after its maximum wait the next call finds it due for yet another trial.
        _ = try permit(&machine, at: .seconds(11))
        let late = machine.tryAcquire(now: .seconds(30))
        #expect(
            late.transitions == [
                Transition(from: .halfOpen, to: .open(since: .seconds(12))),
                Transition(from: .open(since: .seconds(12)), to: .halfOpen),
            ])
        #expect(late.permission.permit != nil)
    }

    @Test
    func withoutAMaximumWaitHalfOpenWaitsForItsTrialCalls() throws {
        var machine = makeMachine(trials: 1)
        opened(&machine)
        let slowTrial = try permit(&machine, at: .seconds(5))
        #expect(machine.tryAcquire(now: .seconds(3_600)).transitions == [])
        #expect(machine.state == .halfOpen)
        #expect(machine.record(.success, duration: Self.fast, permit: slowTrial, now: .seconds(3_600)).map(\.to) == [.closed])
    }

    // MARK: Manual transitions

    @Test
    func forceOpenOpensForAFullWaitAndResetCloses() {
        var machine = makeMachine()
        call(&machine, .failure)
        #expect(machine.forceOpen(now: .seconds(1)) == [Transition(from: .closed, to: .open(since: .seconds(1)))])
        #expect(machine.tryAcquire(now: .seconds(2)).permission == .rejected(retryAfter: .seconds(4)))
        #expect(machine.forceOpen(now: .seconds(3)) == [], "already open: the wait restarts")
        #expect(machine.state == .open(since: .seconds(3)))

        #expect(machine.reset() == [Transition(from: .open(since: .seconds(3)), to: .closed)])
        #expect(machine.metrics.calls == 0)
        #expect(machine.tryAcquire(now: .seconds(3)).permission.permit != nil)
        #expect(machine.reset() == [])
    }

    @Test
    func aFullCycleReportsEveryTransition() throws {
        var machine = makeMachine(window: 2, minimumCalls: 2, trials: 1)
        var transitions: [Transition] = []
        transitions += call(&machine, .failure, at: .seconds(1))
        transitions += call(&machine, .failure, at: .seconds(1))
        transitions += machine.tryAcquire(now: .seconds(2)).transitions
        let trial = machine.tryAcquire(now: .seconds(7))
        transitions += trial.transitions
        transitions += machine.record(.failure, duration: Self.fast, permit: try #require(trial.permission.permit), now: .seconds(7))
        let retrial = machine.tryAcquire(now: .seconds(12))
        transitions += retrial.transitions
        transitions += machine.record(.success, duration: Self.fast, permit: try #require(retrial.permission.permit), now: .seconds(12))

        let opened = Duration.seconds(1) + Self.fast
        #expect(
            transitions == [
                Transition(from: .closed, to: .open(since: opened)),
                Transition(from: .open(since: opened), to: .halfOpen),
                Transition(from: .halfOpen, to: .open(since: .seconds(7))),
                Transition(from: .open(since: .seconds(7)), to: .halfOpen),
                Transition(from: .halfOpen, to: .closed),
            ])
    }
}
