import Synchronization

/// The instant by which a remote call made on behalf of a request must have answered.
///
/// A hung dependency (a paused or partitioned database: the connection is open, nothing comes
/// back) would otherwise hold a request for the driver's own timeout, past the request's deadline.
/// The caller that knows the budget sets the bound (`within`), and `GuardedStore` gives up on a
/// call at that instant: the call reads as unavailable, counts against the breaker, and the caller
/// takes its fallback (an entry goes to the outbox) while there is still time to answer.
public enum CallDeadline {
    @TaskLocal public static var current: ContinuousClock.Instant?

    /// Runs `body` with remote calls bounded by `instant`, or by the enclosing bound when that is
    /// sooner (a bound is only ever tightened).
    public static func within<T>(
        _ instant: ContinuousClock.Instant,
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> T
    ) async rethrows -> T {
        let bound = current.map { min($0, instant) } ?? instant
        return try await $current.withValue(bound, operation: body, isolation: isolation)
    }
}

/// A bounded call did not answer by its deadline.
public struct CallDeadlineExceeded: Error, CustomStringConvertible {
    public var description: String { "no answer before the request's deadline" }
}

/// Runs `body` and returns what it returns, or throws `CallDeadlineExceeded` at `deadline` without
/// waiting for it any longer: its task is cancelled and finishes on its own, bounded by the
/// driver's timeouts. (A task group would wait for the child, and a call already on the wire does
/// not stop at cancellation, so the race is written out here.) Cancelling the caller cancels the
/// call and throws `CancellationError`.
public func boundedCall<T: Sendable>(
    by deadline: ContinuousClock.Instant,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    guard ContinuousClock.now < deadline else { throw CallDeadlineExceeded() }
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.arm(continuation)
            let work = Task {
                do { race.resolve(.success(try await body())) } catch { race.resolve(.failure(error)) }
            }
            let timer = Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                if !Task.isCancelled { race.resolve(.failure(CallDeadlineExceeded())) }
            }
            race.track([work, timer])
        }
    } onCancel: {
        race.resolve(.failure(CancellationError()))
    }
}

/// Runs `body` bounded by `budget` from now, or by the enclosing `CallDeadline` when that is
/// sooner; without either, unbounded. For calls to a dependency whose driver bounds each socket
/// read but not the wait for a pooled connection: behind a hung server every caller would queue for
/// the pool's few connections, each holding its caller for the driver's timeout in turn.
public func boundedCall<T: Sendable>(
    within budget: Duration?,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let own = budget.map { ContinuousClock.now + $0 }
    let bound = [own, CallDeadline.current].compactMap { $0 }.min()
    guard let bound else { return try await body() }
    return try await boundedCall(by: bound, body)
}

/// The first outcome wins; the losers' tasks are cancelled.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var outcome: Result<T, any Error>?
        var tasks: [Task<Void, Never>] = []
    }
    private let state = Mutex(State())

    func arm(_ continuation: CheckedContinuation<T, any Error>) {
        let early = state.withLock { s -> Result<T, any Error>? in
            if let outcome = s.outcome { return outcome }  // cancelled before the continuation existed
            s.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func track(_ tasks: [Task<Void, Never>]) {
        let settled = state.withLock { s -> Bool in
            s.tasks = tasks
            return s.outcome != nil
        }
        if settled { for task in tasks { task.cancel() } }
    }

    func resolve(_ outcome: Result<T, any Error>) {
        let (continuation, tasks) = state.withLock { s -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
            guard s.outcome == nil else { return (nil, []) }
            s.outcome = outcome
            defer { s.continuation = nil }
            return (s.continuation, s.tasks)
        }
        continuation?.resume(with: outcome)
        for task in tasks { task.cancel() }
    }
}
