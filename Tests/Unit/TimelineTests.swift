import Soma
import Testing

/// `Timeline`: the service's clock as a duration since its origin, on an injected clock. Time
/// moves only with `ManualClock.advance(by:)`; another task's state is awaited with `settle`.
@Suite(.timeLimit(.minutes(1)))
struct TimelineTests {
    @Test
    func timelineNowFollowsTheClockFromItsOrigin() {
        let clock = ManualClock()
        clock.advance(by: .seconds(7))
        let timeline = Timeline(clock: clock)
        #expect(timeline.now() == .zero)
        clock.advance(by: .milliseconds(250))
        #expect(timeline.now() == .milliseconds(250))
        clock.advance(by: .seconds(2))
        #expect(timeline.now() == .milliseconds(2_250))
    }

    @Test
    func timelineSleepReturnsWhenTheClockPassesTheInstant() async throws {
        let clock = ManualClock()
        let timeline = Timeline(clock: clock)
        clock.advance(by: .milliseconds(250))

        // Instants already reached return at once, without registering a sleeper.
        try await timeline.sleep(until: .milliseconds(100))
        try await timeline.sleep(until: .milliseconds(250))
        #expect(clock.sleeperCount == 0)

        let woke = Locked(false)
        let sleeper = Task {
            try await timeline.sleep(until: .milliseconds(300))
            woke.withLock { $0 = true }
        }
        try await settle("sleeper registered") { clock.sleeperCount == 1 }

        clock.advance(by: .milliseconds(49))
        for _ in 0..<20 { await Task.yield() }
        #expect(!woke.value)
        #expect(clock.sleeperCount == 1)

        clock.advance(by: .milliseconds(1))
        try await settle("sleeper woke") { woke.value }
        try await sleeper.value
        #expect(clock.sleeperCount == 0)
    }

    @Test
    func timelineSleepThrowsWhenCancelled() async throws {
        let clock = ManualClock()
        let timeline = Timeline(clock: clock)

        let sleeper = Task { try await timeline.sleep(until: .seconds(10)) }
        try await settle("sleeper registered") { clock.sleeperCount == 1 }
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        #expect(clock.sleeperCount == 0)
        #expect(timeline.now() == .zero)
    }
}
