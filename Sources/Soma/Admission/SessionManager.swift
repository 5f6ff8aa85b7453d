import Synchronization

/// Why the session manager did not let a request run.
public struct AdmissionRefusal: Error, Sendable, Hashable {
    public enum Reason: Sendable, Hashable {
        /// The user has their tier's number of requests in flight (HTTP 429).
        case userConcurrency
        /// The in-flight or queue bound is reached, or the wait would pass the deadline
        /// (HTTP 503 `overloaded`).
        case overloaded
        /// A higher tier took this request's place in the queue (HTTP 503 `overloaded`).
        case shed
        /// The request waited until its deadline passed (the degradation chain answers).
        case expired
    }

    public var reason: Reason
    /// When the client may try again (`Retry-After`); zero for `.expired`.
    public var retryAfter: Duration

    public init(_ reason: Reason, retryAfter: Duration) {
        self.reason = reason
        self.retryAfter = retryAfter
    }
}

/// The session manager: admits analysis requests through the `AdmissionStateMachine` and makes
/// callers wait, in tier order, for one of the worker slots (docs/ARCHITECTURE.md §3).
///
/// A thin async wrapper: the machine decides, this type keeps one continuation per waiting request,
/// resumes them after the lock is released, wakes a waiter at its deadline (`tick`), and turns a
/// cancelled caller into `cancel`. The work itself runs on the caller's task inside
/// `withAdmission`, so at most `workers` analyses run at once and a waiting request costs no
/// thread.
///
/// ```swift
/// let sessions = SessionManager(configuration: .init(workers: 2))
/// let results = try await sessions.withAdmission(user: "u1", tier: .premium, deadline: sessions.now() + .seconds(1)) {
///     engine.analyze(text)
/// }
/// ```
public final class SessionManager: Sendable {
    /// The outcome a waiter is resumed with.
    private enum Decision: Sendable {
        case run
        case refused(AdmissionRefusal)
    }

    private struct State {
        var machine: AdmissionStateMachine<UInt64>
        var nextID: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Decision, Never>] = [:]
        /// Decisions reached before the waiter had parked its continuation.
        var early: [UInt64: Decision] = [:]
    }

    public let configuration: AdmissionConfiguration
    private let timeline: Timeline
    private let state: Mutex<State>

    public init(configuration: AdmissionConfiguration = AdmissionConfiguration(), clock: any Clock<Duration> = ContinuousClock()) {
        self.configuration = configuration
        self.timeline = Timeline(clock: clock)
        self.state = Mutex(State(machine: AdmissionStateMachine(configuration: configuration)))
    }

    /// Now on the manager's time line: deadlines are `now() + timeout`.
    public func now() -> Duration { timeline.now() }

    /// Requests running now.
    public var runningCount: Int { state.withLock { $0.machine.runningCount } }

    /// Requests waiting for a worker in `tier`'s lane.
    public func queuedCount(tier: Tier) -> Int { state.withLock { $0.machine.queuedCount(tier: tier) } }

    /// Requests waiting, all tiers.
    public var queuedCount: Int { state.withLock { $0.machine.queuedCount } }

    /// Requests of `user` admitted and not yet ended.
    public func inFlight(user: String) -> Int { state.withLock { $0.machine.inFlight(user: user) } }

    /// The current service-time estimate.
    public var estimatedServiceTime: Duration { state.withLock { $0.machine.estimatedServiceTime } }

    /// Runs `body` once the request holds a worker slot, and frees the slot when it returns.
    ///
    /// Throws `AdmissionRefusal` when the request is refused at arrival, shed from the queue or
    /// expired there; `CancellationError` when the caller is cancelled while waiting. `body`'s own
    /// errors pass through.
    public func withAdmission<R>(
        user: String,
        tier: Tier,
        deadline: Duration,
        _ body: () async throws -> R
    ) async throws -> R {
        let id = try await admit(user: user, tier: tier, deadline: deadline)
        let started = timeline.now()
        do {
            let result = try await body()
            finish(id, serviceTime: timeline.now() - started)
            return result
        } catch {
            finish(id, serviceTime: timeline.now() - started)
            throw error
        }
    }

    /// Waits until request `id` may run; returns its id.
    private func admit(user: String, tier: Tier, deadline: Duration) async throws -> UInt64 {
        let (id, own, others) = state.withLock { s -> (UInt64, Decision?, [(CheckedContinuation<Decision, Never>, Decision)]) in
            s.nextID &+= 1
            let id = s.nextID
            let actions = s.machine.arrive(id: id, user: user, tier: tier, deadline: deadline, now: timeline.now())
            var own: Decision?
            var others: [(CheckedContinuation<Decision, Never>, Decision)] = []
            for action in actions {
                switch action {
                case .run(let x) where x == id: own = .run
                case .enqueue(let x) where x == id: own = nil
                case .reject(_, let reason, let retryAfter):
                    own = .refused(AdmissionRefusal(reason == .userConcurrency ? .userConcurrency : .overloaded, retryAfter: retryAfter))
                default:
                    others += Self.resolve(action, in: &s)
                }
            }
            return (id, own, others)
        }
        for (continuation, decision) in others { continuation.resume(returning: decision) }
        switch own {
        case .run: return id
        case .refused(let refusal): throw refusal
        case nil: break
        }

        // Queued: wait for a worker, waking at the deadline to expire ourselves if nobody did.
        let decision = await withTaskGroup(of: Decision?.self) { group in
            group.addTask { await self.decision(for: id) }
            group.addTask {
                do { try await self.timeline.sleep(until: deadline) } catch { return nil }
                self.tick()
                return nil
            }
            var outcome: Decision = .refused(AdmissionRefusal(.expired, retryAfter: .zero))
            for await result in group {
                if let result {
                    outcome = result
                    group.cancelAll()
                    break
                }
            }
            return outcome
        }
        switch decision {
        case .run:
            if Task.isCancelled {
                // It never ran: free the slot without teaching the service-time estimate.
                release(id)
                throw CancellationError()
            }
            return id
        case .refused(let refusal):
            if Task.isCancelled, refusal.reason == .expired { throw CancellationError() }
            throw refusal
        }
    }

    /// Parks until the machine decides about `id`; a cancelled caller leaves the queue.
    private func decision(for id: UInt64) async -> Decision {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Decision, Never>) in
                let ready = state.withLock { s -> Decision? in
                    if let decided = s.early.removeValue(forKey: id) { return decided }
                    s.waiters[id] = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let resumes = state.withLock { s -> [(CheckedContinuation<Decision, Never>, Decision)] in
                let queued = if case .queued = s.machine.state(of: id) { true } else { false }
                let actions = s.machine.cancel(id: id, now: timeline.now())
                var resumes = actions.flatMap { Self.resolve($0, in: &s) }
                let cancelled = Decision.refused(AdmissionRefusal(.expired, retryAfter: .zero))
                if let own = s.waiters.removeValue(forKey: id) {
                    resumes.append((own, cancelled))
                } else if queued {
                    // Not parked yet: it will find this decision when it does. (A request already
                    // told to run finds out about the cancellation in `admit`.)
                    s.early[id] = cancelled
                }
                return resumes
            }
            for (continuation, decision) in resumes { continuation.resume(returning: decision) }
        }
    }

    private func finish(_ id: UInt64, serviceTime: Duration?) {
        let resumes = state.withLock { s in
            s.machine.finish(id: id, now: timeline.now(), serviceTime: serviceTime).flatMap { Self.resolve($0, in: &s) }
        }
        for (continuation, decision) in resumes { continuation.resume(returning: decision) }
    }

    /// Ends request `id` as cancelled (`AdmissionStateMachine.cancel`) and starts what that frees.
    private func release(_ id: UInt64) {
        let resumes = state.withLock { s in
            s.machine.cancel(id: id, now: timeline.now()).flatMap { Self.resolve($0, in: &s) }
        }
        for (continuation, decision) in resumes { continuation.resume(returning: decision) }
    }

    /// Expires waiting requests whose deadline has passed.
    private func tick() {
        let resumes = state.withLock { s in
            s.machine.tick(now: timeline.now()).flatMap { Self.resolve($0, in: &s) }
        }
        for (continuation, decision) in resumes { continuation.resume(returning: decision) }
    }

    /// Turns an action about a waiting request into the continuation to resume (or an early
    /// decision when it has not parked yet).
    private static func resolve(_ action: AdmissionStateMachine<UInt64>.Action, in s: inout State) -> [(CheckedContinuation<Decision, Never>, Decision)] {
        let id: UInt64
        let decision: Decision
        switch action {
        case .run(let x): (id, decision) = (x, .run)
        case .shed(let x, let retryAfter): (id, decision) = (x, .refused(AdmissionRefusal(.shed, retryAfter: retryAfter)))
        case .expire(let x): (id, decision) = (x, .refused(AdmissionRefusal(.expired, retryAfter: .zero)))
        case .enqueue, .reject: return []
        }
        if let continuation = s.waiters.removeValue(forKey: id) { return [(continuation, decision)] }
        s.early[id] = decision
        return []
    }
}
