import Synchronization

/// At most `size` connections, created lazily; callers beyond that wait (suspended, no thread blocked)
/// in FIFO order for one to be released. A task cancelled while waiting stops waiting at once.
final class PostgresPool: Sendable {
    private struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<PostgresConnection, any Error>
    }

    private struct State {
        var idle: [PostgresConnection] = []
        /// Connection objects that exist (idle + leased).
        var slots = 0
        var leased = 0
        var waiters: [Waiter] = []
        var nextID = 0
        var closed = false
    }

    private enum Acquisition {
        case ready(PostgresConnection)
        case create(Int)
        case failed(any Error)
        case waiting
    }

    let size: Int
    let counters = PostgresPoolCounters()
    private let settings: PostgresConnectionSettings
    private let state = Mutex(State())

    init(size: Int, settings: PostgresConnectionSettings) {
        self.size = max(1, size)
        self.settings = settings
    }

    /// A connection for the caller's exclusive use until ``release(_:)``.
    func acquire() async throws -> PostgresConnection {
        let waiterID = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<PostgresConnection, any Error>) in
                let acquisition: Acquisition = state.withLock { state in
                    if state.closed { return .failed(PostgresError(.closed, "the PostgreSQL client is closed")) }
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
                case .create(let id): continuation.resume(returning: PostgresConnection(id: id, settings: settings, counters: counters))
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
    func release(_ connection: PostgresConnection) {
        enum Next { case handOff(CheckedContinuation<PostgresConnection, any Error>), shutdown, idle }
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

    /// Fails waiting callers and later acquisitions with ``PostgresError/Code/closed``; closes idle
    /// connections now and leased ones when they come back.
    func close() {
        let (idle, waiters): ([PostgresConnection], [Waiter]) = state.withLock { state in
            guard !state.closed else { return ([], []) }
            state.closed = true
            let idle = state.idle
            state.idle = []
            state.slots -= idle.count
            let waiters = state.waiters
            state.waiters = []
            return (idle, waiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: PostgresError(.closed, "the PostgreSQL client is closed")) }
        for connection in idle { connection.shutdown() }
    }

    /// (idle, leased, waiting) right now.
    var usage: (idle: Int, leased: Int, waiting: Int) {
        state.withLock { ($0.idle.count, $0.leased, $0.waiters.count) }
    }
}
