/// Time as a `Duration` since an origin on a clock: what the pure state machines take as `now`,
/// with a way to sleep on the same clock. Built once from any `Clock<Duration>` so that callers can
/// keep the clock as an existential (`any Clock<Duration>`) and still read instants cheaply.
///
/// ```swift
/// let timeline = Timeline(clock: ContinuousClock())
/// let start = timeline.now()
/// try await timeline.sleep(until: start + .milliseconds(5))
/// ```
public struct Timeline: Sendable {
    /// Time since the origin (when the timeline was made).
    public let now: @Sendable () -> Duration
    private let sleepFor: @Sendable (Duration) async throws -> Void

    public init(clock: any Clock<Duration> = ContinuousClock()) {
        (now, sleepFor) = Self.open(clock)
    }

    private static func open<C: Clock<Duration>>(_ clock: C) -> (@Sendable () -> Duration, @Sendable (Duration) async throws -> Void) {
        let origin = clock.now
        return (
            { origin.duration(to: clock.now) },
            { try await clock.sleep(until: origin.advanced(by: $0), tolerance: nil) }
        )
    }

    /// Sleeps until `instant` (a duration since the origin); returns at once when it has passed.
    /// Throws `CancellationError` when the task is cancelled.
    public func sleep(until instant: Duration) async throws {
        try await sleepFor(instant)
    }
}
