import Synchronization

/// Distinct users seen within a sliding window, for the `soma_active_users` gauge.
///
/// `record` is called on every request, so it is one dictionary write under a `Mutex`: the state is
/// each user's last-seen instant, kept as the duration since the tracker was made on the injected
/// clock. A user is active while less than `window` has passed since they were last seen.
///
/// Expired users are swept by `count()` at most once per `sweepInterval` (a second, or a tenth of a
/// short window), so a scrape costs a dictionary count and, now and then, one pass over the
/// tracked users; between sweeps the count may include a user up to `sweepInterval` past the
/// window. Memory is bounded: when more than `maxTracked` users are tracked, `record` sweeps the
/// expired ones and, if still too many are left, drops the least recently seen down to 90 % of the
/// bound, which keeps that work amortised over the following records.
public final class ActiveUsers: Sendable {
    /// How long a user counts as active after their last request.
    public let window: Duration
    /// Most users tracked at once.
    public let maxTracked: Int
    /// Longest time between two sweeps of expired users by `count()`.
    public let sweepInterval: Duration

    private struct State {
        var lastSeen: [String: Duration] = [:]
        var lastSweep: Duration = .zero
    }

    private let elapsed: @Sendable () -> Duration
    private let state = Mutex(State())

    /// - Parameters:
    ///   - window: how long a user stays active after a request.
    ///   - maxTracked: bound on the users held in memory.
    ///   - clock: the clock the window is measured on; tests pass a manual one.
    public init(window: Duration = .seconds(300), maxTracked: Int = 1_000_000, clock: any Clock<Duration> = ContinuousClock()) {
        precondition(window > .zero, "window must be positive")
        precondition(maxTracked >= 1, "maxTracked must be at least 1")
        self.window = window
        self.maxTracked = maxTracked
        self.sweepInterval = min(.seconds(1), window / 10)
        self.elapsed = Timeline(clock: clock).now
    }

    /// Marks `user` as seen now.
    public func record(_ user: String) {
        let now = elapsed()
        state.withLock { s in
            s.lastSeen[user] = now
            if s.lastSeen.count > maxTracked { shrink(&s, now: now, keeping: user) }
        }
    }

    /// Number of distinct users seen within the window.
    public func count() -> Int {
        let now = elapsed()
        return state.withLock { s in
            if now - s.lastSweep >= sweepInterval { sweep(&s, now: now) }
            return s.lastSeen.count
        }
    }

    /// Whether `user` was seen within the window (exact, whatever the sweeps).
    public func isActive(_ user: String) -> Bool {
        let now = elapsed()
        return state.withLock { s in
            guard let seen = s.lastSeen[user] else { return false }
            return now - seen < window
        }
    }

    private func sweep(_ s: inout State, now: Duration) {
        s.lastSweep = now
        s.lastSeen = s.lastSeen.filter { now - $0.value < window }
    }

    /// Sweeps, then if more than 90 % of the bound are left keeps `user` and the most recently seen
    /// of the others up to that size.
    private func shrink(_ s: inout State, now: Duration, keeping user: String) {
        sweep(&s, now: now)
        // Shrinking below the bound, not to it, leaves room for the next records to be cheap.
        let keep = max(1, maxTracked - max(1, maxTracked / 10))
        guard s.lastSeen.count > keep else { return }
        s.lastSeen[user] = nil
        let others = keep - 1
        if others == 0 {
            s.lastSeen.removeAll()
        } else {
            let cutoff = s.lastSeen.values.sorted(by: >)[others - 1]
            // Users seen exactly at the cutoff may tie; keep only as many of them as fit.
            var ties = others - s.lastSeen.values.reduce(0) { $0 + ($1 > cutoff ? 1 : 0) }
            s.lastSeen = s.lastSeen.filter { _, seen in
                if seen > cutoff { return true }
                guard seen == cutoff, ties > 0 else { return false }
                ties -= 1
                return true
            }
        }
        s.lastSeen[user] = now
    }
}
