import ServiceLifecycle
import Synchronization

/// A connection a `ConnectionPool` hands out (Redis, PostgreSQL): made lazily with an id, the
/// client's settings and the pool's counters, shut down when the pool closes.
protocol PooledConnection: Sendable {
    associatedtype Settings: Sendable
    init(id: Int, settings: Settings, counters: PoolCounters)
    func shutdown()
    /// What a caller gets after the pool was closed.
    static func closedError() -> any Error
}

/// Pool-wide counters, shared by the pool and its connections.
final class PoolCounters: Sendable {
    /// Connections with a live client connection right now.
    let open = Atomic<Int>(0)
    /// The most `open` has ever been.
    let peakOpen = Atomic<Int>(0)
    /// Successful connects over the pool's lifetime.
    let created = Atomic<Int>(0)
    /// Bumped when a connection fails with a connect or I/O error (server gone or restarted): idle
    /// connections from an older epoch are re-created before use instead of failing one by one.
    let failureEpoch = Atomic<Int>(0)

    func didOpen() {
        let now = open.add(1, ordering: .relaxed).newValue
        _ = created.add(1, ordering: .relaxed)
        var peak = peakOpen.load(ordering: .relaxed)
        while now > peak {
            let (exchanged, original) = peakOpen.compareExchange(expected: peak, desired: now, ordering: .relaxed)
            if exchanged { break }
            peak = original
        }
    }

    func didFail() { _ = failureEpoch.add(1, ordering: .relaxed) }

    func didClose() { _ = open.subtract(1, ordering: .relaxed) }

    var snapshot: (open: Int, peakOpen: Int, created: Int) {
        (open.load(ordering: .relaxed), peakOpen.load(ordering: .relaxed), created.load(ordering: .relaxed))
    }
}

/// At most `size` connections, created lazily; callers beyond that wait (suspended, no thread blocked)
/// in FIFO order for one to be released.
final class ConnectionPool<Connection: PooledConnection>: Sendable {
    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Connection, any Error>
    }

    private struct State {
        var idle: [Connection] = []
        /// Connection objects that exist (idle + leased).
        var slots = 0
        var leased = 0
        var waiters: [Waiter] = []
        var nextID = 0
        var closed = false
    }

    private enum Acquisition {
        case ready(Connection)
        case create(Int)
        case failed(any Error)
        case waiting
    }

    let size: Int
    private enum Next {
        case handOff(CheckedContinuation<Connection, any Error>)
        case shutdown, idle
    }

    let counters = PoolCounters()
    private let settings: Connection.Settings
    private let state = Mutex(State())

    init(size: Int, settings: Connection.Settings) {
        self.size = max(1, size)
        self.settings = settings
    }

    /// A connection for the caller's exclusive use until ``release(_:)``.
    func acquire() async throws -> Connection {
        let waiterID = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Connection, any Error>) in
                let acquisition: Acquisition = state.withLock { state in
                    if state.closed { return .failed(Connection.closedError()) }
                    if let connection = state.idle.popLast() {
                        state.leased += 1
                        return .ready(connection)
                    }
                    if state.slots < size {
                        state.slots += 1
                        state.leased += 1
                        state.nextID += 1
                        return .create(state.nextID)
                    }
                    // Checked under the lock: either the cancellation handler runs after this append (and
                    // removes the waiter) or the flag is already set here.
                    if Task.isCancelled { return .failed(CancellationError()) }
                    state.waiters.append(Waiter(id: waiterID, continuation: continuation))
                    return .waiting
                }
                switch acquisition {
                case .ready(let connection): continuation.resume(returning: connection)
                case .create(let id): continuation.resume(returning: Connection(id: id, settings: settings, counters: counters))
                case .failed(let error): continuation.resume(throwing: error)
                case .waiting: break
                }
            }
        } onCancel: {
            let waiter: Waiter? = state.withLock { state in
                guard let index = state.waiters.firstIndex(where: { $0.id == waiterID }) else { return nil }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Gives a connection back: to the longest waiter, to the idle list, or (pool closed) to shutdown.
    func release(_ connection: Connection) {
        let next: Next = state.withLock { state in
            if state.closed {
                state.leased -= 1
                state.slots -= 1
                return .shutdown
            }
            if !state.waiters.isEmpty {
                return .handOff(state.waiters.removeFirst().continuation)
            }
            state.leased -= 1
            state.idle.append(connection)
            return .idle
        }
        switch next {
        case .handOff(let continuation): continuation.resume(returning: connection)
        case .shutdown: connection.shutdown()
        case .idle: break
        }
    }

    /// Fails waiting callers and later acquisitions with the connection type's `closedError()`; closes idle connections
    /// now and leased ones when they come back.
    func close() {
        let (idle, waiters): ([Connection], [Waiter]) = state.withLock { state in
            guard !state.closed else { return ([], []) }
            state.closed = true
            let idle = state.idle
            state.idle = []
            state.slots -= idle.count
            let waiters = state.waiters
            state.waiters = []
            return (idle, waiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: Connection.closedError()) }
        for connection in idle { connection.shutdown() }
    }

    /// The pool's lifetime as its client's Service `run()` (as postgres-nio's client runs its
    /// pool): returns on graceful shutdown or cancellation, then closes the pool. List the client
    /// before the services that use it, so it is shut down after them.
    func runUntilShutdown() async {
        try? await gracefulShutdown()
        close()
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// (leased, waiting) right now.
    var usage: (idle: Int, leased: Int, waiting: Int) { state.withLock { ($0.idle.count, $0.leased, $0.waiters.count) } }
}
