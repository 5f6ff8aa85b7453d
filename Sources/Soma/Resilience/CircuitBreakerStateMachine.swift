/// The thresholds and waits of a circuit breaker; every field has a default. Names and meaning follow
/// resilience4j's `CircuitBreakerConfig` with a count-based sliding window; the defaults are tuned
/// for calls to Redis and PostgreSQL (fast calls, short outages), not resilience4j's.
public struct CircuitBreakerConfiguration: Sendable, Hashable {
    /// How many of the most recent calls the CLOSED state judges (a count-based sliding window).
    public var slidingWindowSize: Int
    /// Calls the window must hold before any rate is evaluated: below it the breaker stays closed
    /// even if every call failed. Capped at `slidingWindowSize` (as resilience4j does for a
    /// count-based window), since the window never holds more.
    public var minimumNumberOfCalls: Int
    /// Failure rate, in percent of the calls in the window, at or above which the breaker opens.
    public var failureRateThreshold: Double
    /// A call that takes at least this long is slow, whether it succeeded or failed.
    public var slowCallDurationThreshold: Duration
    /// Slow-call rate, in percent of the calls in the window, at or above which the breaker opens.
    /// The default, 100, opens only when every call in the window is slow.
    public var slowCallRateThreshold: Double
    /// How long the breaker stays OPEN (rejecting every call) before it lets trial calls through.
    public var waitDurationInOpenState: Duration
    /// Trial calls permitted in HALF_OPEN; their outcomes decide between CLOSED and OPEN.
    public var permittedCallsInHalfOpenState: Int
    /// Longest stay in HALF_OPEN before the breaker gives up on the trial calls and opens again;
    /// zero waits for all the permitted calls however long they take.
    public var maxWaitDurationInHalfOpenState: Duration

    public init(
        slidingWindowSize: Int = 20,
        minimumNumberOfCalls: Int = 10,
        failureRateThreshold: Double = 50,
        slowCallDurationThreshold: Duration = .milliseconds(100),
        slowCallRateThreshold: Double = 100,
        waitDurationInOpenState: Duration = .seconds(5),
        permittedCallsInHalfOpenState: Int = 3,
        maxWaitDurationInHalfOpenState: Duration = .zero
    ) {
        precondition(slidingWindowSize >= 1, "slidingWindowSize must be at least 1")
        precondition(minimumNumberOfCalls >= 1, "minimumNumberOfCalls must be at least 1")
        precondition(failureRateThreshold > 0 && failureRateThreshold <= 100, "failureRateThreshold must be in (0, 100]")
        precondition(slowCallDurationThreshold > .zero, "slowCallDurationThreshold must be positive")
        precondition(slowCallRateThreshold > 0 && slowCallRateThreshold <= 100, "slowCallRateThreshold must be in (0, 100]")
        precondition(waitDurationInOpenState >= .zero, "waitDurationInOpenState must not be negative")
        precondition(permittedCallsInHalfOpenState >= 1, "permittedCallsInHalfOpenState must be at least 1")
        precondition(maxWaitDurationInHalfOpenState >= .zero, "maxWaitDurationInHalfOpenState must not be negative")
        self.slidingWindowSize = slidingWindowSize
        self.minimumNumberOfCalls = minimumNumberOfCalls
        self.failureRateThreshold = failureRateThreshold
        self.slowCallDurationThreshold = slowCallDurationThreshold
        self.slowCallRateThreshold = slowCallRateThreshold
        self.waitDurationInOpenState = waitDurationInOpenState
        self.permittedCallsInHalfOpenState = permittedCallsInHalfOpenState
        self.maxWaitDurationInHalfOpenState = maxWaitDurationInHalfOpenState
    }
}

/// Decides whether a call to a dependency (Redis, PostgreSQL) may go out, from the outcomes of the
/// calls before it: resilience4j's circuit breaker, with a count-based window, as a pure state
/// machine.
///
/// States:
/// - CLOSED: every call is permitted; each outcome enters a sliding window of the last
///   `slidingWindowSize` calls. Once the window holds `minimumNumberOfCalls`, the breaker opens when
///   the failure rate reaches `failureRateThreshold` or the slow-call rate reaches
///   `slowCallRateThreshold` (a slow call lasted at least `slowCallDurationThreshold`, success or
///   not; both rates are over all calls in the window).
/// - OPEN: every call is rejected, with `retryAfter` the rest of `waitDurationInOpenState`. The first
///   `tryAcquire` after the wait moves to HALF_OPEN (lazily, as resilience4j does without its
///   automatic transition: `state` reads OPEN until a call asks).
/// - HALF_OPEN: `permittedCallsInHalfOpenState` trial calls are permitted, the rest rejected. When
///   all of them have an outcome, the same thresholds over the trial calls alone decide: at or above
///   either one the breaker opens again for a full wait, otherwise it closes with an empty window.
///   With a non-zero `maxWaitDurationInHalfOpenState`, a trial not decided in that time opens it
///   again (dated when the time ran out).
///
/// Why a state machine: as with `AdmissionStateMachine`, the policy is what is worth testing
/// exhaustively, and it is easy to test only without clocks, locks or I/O. The owner
/// (`CircuitBreaker`) holds it under a lock and passes time in: every `now` is a `Duration` since an
/// origin of the owner's choosing (its `Timeline`), the same for every call. Each event returns what
/// the owner must act on, a permission and the state transitions it caused, for logs and for the
/// `soma_circuit_state` gauge.
///
/// A permission carries a `Permit`, which the owner hands back exactly once: to `record` when the
/// call ended with an outcome, or to `release` when it ended without one (it was cancelled). The
/// permit ties the outcome to the state that let the call through: an outcome from before the last
/// transition (a slow call permitted while CLOSED that ends after the breaker opened and went
/// HALF_OPEN) is ignored rather than counted as a trial call, and its release frees no trial permit
/// it never took.
///
/// ```swift
/// var machine = CircuitBreakerStateMachine()
/// let acquisition = machine.tryAcquire(now: now)
/// log(acquisition.transitions)
/// switch acquisition.permission {
/// case .rejected(let retryAfter):
///     throw CircuitBreakerOpenError(name: "redis", retryAfter: retryAfter)
/// case .permitted(let permit):
///     let succeeded = call()                        // later: the time when it returned
///     log(machine.record(succeeded ? .success : .failure, duration: later - now, permit: permit, now: later))
/// }
/// ```
///
/// Cost: every event is O(1); the window is a ring of `slidingWindowSize` entries with running
/// counts.
public struct CircuitBreakerStateMachine: Sendable {
    /// Where the breaker is. The numbers of `stateValue` are those of the `soma_circuit_state` gauge.
    public enum State: Sendable, Hashable, CustomStringConvertible {
        /// Calls go through; their outcomes are judged over the sliding window.
        case closed
        /// Calls are rejected; `since` is when it opened, on the owner's timeline.
        case open(since: Duration)
        /// A few trial calls go through and decide between closing and opening again.
        case halfOpen

        /// The value exported as `soma_circuit_state`: 0 closed, 1 half-open, 2 open (growing with
        /// how much traffic is turned away).
        public var stateValue: Int {
            switch self {
            case .closed: 0
            case .halfOpen: 1
            case .open: 2
            }
        }

        public var description: String {
            switch self {
            case .closed: "closed"
            case .halfOpen: "half-open"
            case .open: "open"
            }
        }
    }

    /// How a permitted call ended.
    public enum Outcome: Sendable, Hashable {
        case success
        case failure
    }

    /// Proof that a call was permitted, to hand back to `record` or `release` exactly once.
    public struct Permit: Sendable, Hashable {
        /// The transition count when the call was permitted: outcomes of older permits are stale.
        fileprivate let epoch: UInt64
    }

    /// Whether a call may go out.
    public enum Permission: Sendable, Hashable {
        /// Make the call, then hand the permit to `record` or `release`.
        case permitted(Permit)
        /// Do not make the call; the breaker may permit calls again after `retryAfter` (in OPEN,
        /// the rest of the wait; in HALF_OPEN with every trial permit taken, an estimate).
        case rejected(retryAfter: Duration)

        /// The permit, `nil` when rejected.
        public var permit: Permit? {
            if case .permitted(let permit) = self { permit } else { nil }
        }
    }

    /// A change of state, for the owner to log and export.
    public struct Transition: Sendable, Hashable, CustomStringConvertible {
        public var from: State
        public var to: State

        public init(from: State, to: State) {
            self.from = from
            self.to = to
        }

        public var description: String { "\(from) -> \(to)" }
    }

    /// What `tryAcquire` decided, and the transitions it caused on the way (at most two: a HALF_OPEN
    /// whose maximum wait ran out opens, and may already be due for a new trial).
    public struct Acquisition: Sendable, Hashable {
        public var permission: Permission
        public var transitions: [Transition]

        public init(permission: Permission, transitions: [Transition] = []) {
            self.permission = permission
            self.transitions = transitions
        }
    }

    /// The calls the current state judges: the sliding window in CLOSED, the trial calls in
    /// HALF_OPEN, and in OPEN the window that opened it (or the trial calls that reopened it).
    public struct Metrics: Sendable, Hashable {
        /// Calls with an outcome.
        public var calls: Int
        /// Of them, failed.
        public var failedCalls: Int
        /// Of them, slow (successful or not).
        public var slowCalls: Int

        public init(calls: Int, failedCalls: Int, slowCalls: Int) {
            self.calls = calls
            self.failedCalls = failedCalls
            self.slowCalls = slowCalls
        }

        /// Percent of the calls that failed; 0 without calls.
        public var failureRate: Double { Self.percent(failedCalls, of: calls) }
        /// Percent of the calls that were slow; 0 without calls.
        public var slowCallRate: Double { Self.percent(slowCalls, of: calls) }

        private static func percent(_ part: Int, of whole: Int) -> Double {
            whole == 0 ? 0 : Double(part) * 100 / Double(whole)
        }
    }

    /// The last `capacity` outcomes as a ring, with running counts.
    private struct Window: Sendable {
        private static let failedFlag: UInt8 = 1
        private static let slowFlag: UInt8 = 2

        private var ring: [UInt8]
        private var next = 0
        private(set) var metrics = Metrics(calls: 0, failedCalls: 0, slowCalls: 0)

        init(capacity: Int) {
            ring = Array(repeating: 0, count: capacity)
        }

        mutating func append(failed: Bool, slow: Bool) {
            if metrics.calls == ring.count {
                let evicted = ring[next]
                if evicted & Self.failedFlag != 0 { metrics.failedCalls -= 1 }
                if evicted & Self.slowFlag != 0 { metrics.slowCalls -= 1 }
            } else {
                metrics.calls += 1
            }
            ring[next] = (failed ? Self.failedFlag : 0) | (slow ? Self.slowFlag : 0)
            next = (next + 1) % ring.count
            if failed { metrics.failedCalls += 1 }
            if slow { metrics.slowCalls += 1 }
        }
    }

    private enum Phase: Sendable {
        case closed(Window)
        /// `window` is kept for `metrics` only.
        case open(since: Duration, window: Window)
        /// `inFlight`: trial calls permitted and not yet recorded or released.
        case halfOpen(since: Duration, trial: Window, inFlight: Int)
    }

    public let configuration: CircuitBreakerConfiguration
    private var phase: Phase
    /// Counts transitions (and resets), so permits from an earlier state are told apart.
    private var epoch: UInt64 = 0

    public init(configuration: CircuitBreakerConfiguration = CircuitBreakerConfiguration()) {
        self.configuration = configuration
        self.phase = .closed(Window(capacity: configuration.slidingWindowSize))
    }

    // MARK: Introspection

    /// The current state. OPEN stays OPEN here after its wait until a `tryAcquire` asks.
    public var state: State {
        switch phase {
        case .closed: .closed
        case .open(let since, _): .open(since: since)
        case .halfOpen: .halfOpen
        }
    }

    /// The calls the current state judges (see `Metrics`).
    public var metrics: Metrics {
        switch phase {
        case .closed(let window): window.metrics
        case .open(_, let window): window.metrics
        case .halfOpen(_, let trial, _): trial.metrics
        }
    }

    /// Trial calls that may still be permitted in HALF_OPEN; 0 in the other states.
    public var availableTrialPermits: Int {
        guard case .halfOpen(_, let trial, let inFlight) = phase else { return 0 }
        return configuration.permittedCallsInHalfOpenState - trial.metrics.calls - inFlight
    }

    /// The number of calls before rates count, capped at the window size.
    private var effectiveMinimumNumberOfCalls: Int {
        min(configuration.minimumNumberOfCalls, configuration.slidingWindowSize)
    }

    // MARK: Events

    /// A call wants to go out: permitted in CLOSED; rejected in OPEN until the wait has passed, when
    /// the breaker turns HALF_OPEN and permits the call as its first trial; in HALF_OPEN permitted
    /// while trial permits remain (`permittedCallsInHalfOpenState` in all, less those recorded or
    /// in flight; a released one is given back).
    ///
    /// A rejection in HALF_OPEN has `retryAfter` = `slowCallDurationThreshold`: the trial calls
    /// in flight should end within it (a longer one counts as slow), and then the breaker decides.
    public mutating func tryAcquire(now: Duration) -> Acquisition {
        var transitions = expireHalfOpen(now: now)
        switch phase {
        case .closed:
            return Acquisition(permission: .permitted(Permit(epoch: epoch)), transitions: transitions)

        case .open(let since, _):
            let reopening = since + configuration.waitDurationInOpenState
            guard now >= reopening else {
                return Acquisition(permission: .rejected(retryAfter: reopening - now), transitions: transitions)
            }
            transitions.append(
                transition(
                    to: .halfOpen(
                        since: now, trial: Window(capacity: configuration.permittedCallsInHalfOpenState), inFlight: 0
                    )))
            return Acquisition(permission: takeTrialPermit(), transitions: transitions)

        case .halfOpen:
            return Acquisition(permission: takeTrialPermit(), transitions: transitions)
        }
    }

    /// A permitted call ended with `outcome` after `duration` (slow when at least
    /// `slowCallDurationThreshold`). In CLOSED it enters the window and may open the breaker; in
    /// HALF_OPEN it is a trial result, and the last one decides. Stale permits (from before the last
    /// transition) change nothing. Returns the transitions it caused.
    @discardableResult
    public mutating func record(_ outcome: Outcome, duration: Duration, permit: Permit, now: Duration) -> [Transition] {
        var transitions = expireHalfOpen(now: now)
        guard permit.epoch == epoch else { return transitions }
        let failed = outcome == .failure
        let slow = duration >= configuration.slowCallDurationThreshold

        switch phase {
        case .closed(var window):
            window.append(failed: failed, slow: slow)
            if window.metrics.calls >= effectiveMinimumNumberOfCalls && exceedsThresholds(window.metrics) {
                transitions.append(transition(to: .open(since: now, window: window)))
            } else {
                phase = .closed(window)
            }

        case .open:
            // OPEN permits nothing, so no current permit can end here.
            break

        case .halfOpen(let since, var trial, let inFlight):
            guard inFlight > 0 else { break }  // a permit handed back twice
            trial.append(failed: failed, slow: slow)
            if trial.metrics.calls < configuration.permittedCallsInHalfOpenState {
                phase = .halfOpen(since: since, trial: trial, inFlight: inFlight - 1)
            } else if exceedsThresholds(trial.metrics) {
                transitions.append(transition(to: .open(since: now, window: trial)))
            } else {
                transitions.append(transition(to: .closed(Window(capacity: configuration.slidingWindowSize))))
            }
        }
        return transitions
    }

    /// A permitted call ended without an outcome (it was cancelled): it counts neither way, and in
    /// HALF_OPEN its trial permit is given back for another call. Stale permits change nothing.
    /// Returns the transitions it caused (only a HALF_OPEN whose maximum wait ran out).
    @discardableResult
    public mutating func release(_ permit: Permit, now: Duration) -> [Transition] {
        let transitions = expireHalfOpen(now: now)
        guard permit.epoch == epoch, case .halfOpen(let since, let trial, let inFlight) = phase, inFlight > 0 else {
            return transitions
        }
        phase = .halfOpen(since: since, trial: trial, inFlight: inFlight - 1)
        return transitions
    }

    /// Opens the breaker now, whatever the window says, for a full `waitDurationInOpenState`
    /// (resilience4j's `transitionToOpenState`, not its sticky FORCED_OPEN: the usual trial follows
    /// the wait). Already OPEN, the wait restarts from `now` and no transition is reported.
    @discardableResult
    public mutating func forceOpen(now: Duration) -> [Transition] {
        switch phase {
        case .open(_, let window):
            phase = .open(since: now, window: window)
            return []
        case .closed(let window), .halfOpen(_, let window, _):
            return [transition(to: .open(since: now, window: window))]
        }
    }

    /// Closes the breaker with an empty window, whatever its state; calls permitted before stay
    /// uncounted. Returns the transition, none when it was already CLOSED.
    @discardableResult
    public mutating func reset() -> [Transition] {
        let fresh = Phase.closed(Window(capacity: configuration.slidingWindowSize))
        if case .closed = phase {
            phase = fresh
            epoch &+= 1
            return []
        }
        return [transition(to: fresh)]
    }

    // MARK: Internals

    private mutating func transition(to next: Phase) -> Transition {
        let from = state
        phase = next
        epoch &+= 1
        return Transition(from: from, to: state)
    }

    /// In HALF_OPEN with a maximum wait that has run out: opens, dated when it ran out.
    private mutating func expireHalfOpen(now: Duration) -> [Transition] {
        let maxWait = configuration.maxWaitDurationInHalfOpenState
        guard maxWait > .zero, case .halfOpen(let since, let trial, _) = phase, now >= since + maxWait else { return [] }
        return [transition(to: .open(since: since + maxWait, window: trial))]
    }

    private mutating func takeTrialPermit() -> Permission {
        guard case .halfOpen(let since, let trial, let inFlight) = phase else {
            preconditionFailure("trial permits exist only in HALF_OPEN")
        }
        guard availableTrialPermits > 0 else {
            return .rejected(retryAfter: configuration.slowCallDurationThreshold)
        }
        phase = .halfOpen(since: since, trial: trial, inFlight: inFlight + 1)
        return .permitted(Permit(epoch: epoch))
    }

    /// Whether either rate is at or above its threshold (compared without division).
    private func exceedsThresholds(_ metrics: Metrics) -> Bool {
        guard metrics.calls > 0 else { return false }
        let calls = Double(metrics.calls)
        return Double(metrics.failedCalls) * 100 >= configuration.failureRateThreshold * calls
            || Double(metrics.slowCalls) * 100 >= configuration.slowCallRateThreshold * calls
    }
}
