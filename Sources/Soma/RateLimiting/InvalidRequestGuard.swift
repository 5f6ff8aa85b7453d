import Synchronization

/// A coarse per-caller bound on requests that fail validation (malformed JSON, bad headers,
/// oversized or non-JSON bodies, invalid fields).
///
/// The rate limit is spent only once a request is valid, so without this a caller could send
/// invalid requests without end, each costing the body read and the parse. Once a caller has had
/// `limit` invalid requests in the current window, every request of theirs is refused (HTTP 429)
/// until the window ends, before its body is read.
///
/// Deliberately coarse: a fixed window per instance (no Redis round trip for what is already an
/// error path), keyed by the caller's asserted user id, so a flood through the gateway on behalf of
/// one user cannot lock out the others. Memory is bounded: at most `maxKeys` callers are counted
/// per window; beyond that new callers are not counted (never refused) until the window rolls.
public final class InvalidRequestGuard: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Invalid requests a caller may make per window (`SOMA_INVALID_REQUESTS_PER_MINUTE`, 60).
        public var limit: Int
        public var window: Duration
        public var maxKeys: Int

        public init(limit: Int = 60, window: Duration = .seconds(60), maxKeys: Int = 100_000) {
            self.limit = limit
            self.window = window
            self.maxKeys = maxKeys
        }
    }

    private struct State {
        var windowStart: Duration = .zero
        var counts: [String: Int] = [:]

        mutating func roll(now: Duration, window: Duration) {
            guard now >= windowStart + window else { return }
            let windows = (now - windowStart) / window
            windowStart += window * Int(windows.rounded(.down))
            counts.removeAll(keepingCapacity: true)
        }
    }

    public let configuration: Configuration
    private let elapsed: @Sendable () -> Duration
    private let state = Mutex(State())

    public init(configuration: Configuration = Configuration(), clock: any Clock<Duration> = ContinuousClock()) {
        self.configuration = configuration
        self.elapsed = Timeline(clock: clock).now
    }

    /// How long `key` stays refused, or nil when its requests may go on.
    public func refusal(_ key: String) -> Duration? {
        let now = elapsed()
        return state.withLock { state in
            state.roll(now: now, window: configuration.window)
            guard let count = state.counts[key], count >= configuration.limit else { return nil }
            return state.windowStart + configuration.window - now
        }
    }

    /// Counts one invalid request of `key`.
    public func record(_ key: String) {
        let now = elapsed()
        state.withLock { state in
            state.roll(now: now, window: configuration.window)
            if state.counts[key] == nil, state.counts.count >= configuration.maxKeys { return }
            state.counts[key, default: 0] += 1
        }
    }
}
