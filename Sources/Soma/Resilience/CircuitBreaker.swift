import Synchronization

/// A call was not made because its circuit breaker is open (or half-open with every trial permit
/// taken): the dependency is failing or slow, and the caller should answer from elsewhere or come
/// back after `retryAfter`.
public struct CircuitBreakerOpenError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The breaker's name, e.g. "redis" or "postgres".
    public var name: String
    /// When the breaker may permit calls again, from the moment of the rejection.
    public var retryAfter: Duration

    public init(name: String, retryAfter: Duration) {
        self.name = name
        self.retryAfter = retryAfter
    }

    public var description: String {
        "circuit breaker '\(name)' is open; retry after \(retryAfter)"
    }
}

/// A circuit breaker around the calls to one dependency (one for Redis, one for PostgreSQL): a
/// `CircuitBreakerStateMachine` under a lock, timed on a clock. See the state machine for the rules
/// (resilience4j's CLOSED → OPEN → HALF_OPEN).
///
/// ```swift
/// let redisBreaker = CircuitBreaker(name: "redis") { from, to in
///     logger.warning("circuit redis: \(from) -> \(to)")
///     stateGauge.record(to.stateValue)                 // soma_circuit_state{name="redis"}
/// }
/// let value = try await redisBreaker.run { try await redis.get(key) }
/// ```
///
/// `run` calls the body only when the breaker permits it, otherwise throws
/// `CircuitBreakerOpenError`. A body that returns is a success, one that throws is a failure, and
/// either is slow when it took at least `slowCallDurationThreshold` on the clock. A body that throws
/// `CancellationError`, or throws anything once its task is cancelled, is neither: its caller left,
/// which says nothing about the dependency, so the outcome is dropped and a half-open trial permit is
/// given back.
///
/// `onTransition` runs after the lock is released, on the task whose call caused the transition. Two
/// transitions caused by concurrent calls may reach it in either order or at once; `state` is the
/// truth.
public final class CircuitBreaker: Sendable {
    /// Where the breaker is: `.closed`, `.open(since:)` (since on the breaker's timeline, which
    /// starts when it is made) or `.halfOpen`.
    public typealias State = CircuitBreakerStateMachine.State

    /// The dependency it guards, e.g. "redis"; the label of its metrics and the name in its errors.
    public let name: String
    public let configuration: CircuitBreakerConfiguration
    private let timeline: Timeline
    private let machine: Mutex<CircuitBreakerStateMachine>
    private let onTransition: (@Sendable (_ from: State, _ to: State) -> Void)?

    /// - Parameters:
    ///   - clock: times the calls and the open wait; a test passes a manual clock.
    ///   - onTransition: told of every state change, outside the lock (see the type's notes).
    public init(
        name: String,
        configuration: CircuitBreakerConfiguration = CircuitBreakerConfiguration(),
        clock: any Clock<Duration> = ContinuousClock(),
        onTransition: (@Sendable (_ from: State, _ to: State) -> Void)? = nil
    ) {
        self.name = name
        self.configuration = configuration
        self.timeline = Timeline(clock: clock)
        self.machine = Mutex(CircuitBreakerStateMachine(configuration: configuration))
        self.onTransition = onTransition
    }

    /// The current state. OPEN reads OPEN after its wait until a call asks (then HALF_OPEN).
    public var state: State { machine.withLock { $0.state } }

    /// The value of the `soma_circuit_state` gauge: 0 closed, 1 half-open, 2 open.
    public var stateValue: Int { state.stateValue }

    /// The calls the current state judges (the window in CLOSED, the trial calls in HALF_OPEN).
    public var metrics: CircuitBreakerStateMachine.Metrics { machine.withLock { $0.metrics } }

    /// Runs `body` if the breaker permits it and records how it went; throws
    /// `CircuitBreakerOpenError` without running it otherwise. Errors of `body` are rethrown as they
    /// are. The body runs in the caller's isolation.
    public func run<T>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> T
    ) async throws -> T {
        let start = timeline.now()
        let acquisition = machine.withLock { $0.tryAcquire(now: start) }
        report(acquisition.transitions)
        let permit: CircuitBreakerStateMachine.Permit
        switch acquisition.permission {
        case .rejected(let retryAfter):
            throw CircuitBreakerOpenError(name: name, retryAfter: retryAfter)
        case .permitted(let granted):
            permit = granted
        }

        let result: T
        do {
            result = try await body()
        } catch {
            let end = timeline.now()
            let cancelled = error is CancellationError || Task.isCancelled
            let transitions = machine.withLock { machine in
                cancelled
                    ? machine.release(permit, now: end)
                    : machine.record(.failure, duration: end - start, permit: permit, now: end)
            }
            report(transitions)
            throw error
        }
        let end = timeline.now()
        report(machine.withLock { $0.record(.success, duration: end - start, permit: permit, now: end) })
        return result
    }

    /// Opens the breaker now for a full wait (e.g. from an admin command); see
    /// `CircuitBreakerStateMachine.forceOpen(now:)`.
    public func forceOpen() {
        let now = timeline.now()
        report(machine.withLock { $0.forceOpen(now: now) })
    }

    /// Closes the breaker with an empty window; see `CircuitBreakerStateMachine.reset()`.
    public func reset() {
        report(machine.withLock { $0.reset() })
    }

    private func report(_ transitions: [CircuitBreakerStateMachine.Transition]) {
        guard let onTransition else { return }
        for transition in transitions { onTransition(transition.from, transition.to) }
    }
}
