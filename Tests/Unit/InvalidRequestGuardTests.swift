import Soma
import Testing

@Suite struct InvalidRequestGuardTests {
    private func makeGuard(limit: Int = 3, maxKeys: Int = 100) -> (InvalidRequestGuard, ManualClock) {
        let clock = ManualClock()
        return (InvalidRequestGuard(configuration: .init(limit: limit, window: .seconds(60), maxKeys: maxKeys), clock: clock), clock)
    }

    @Test func aCallerIsRefusedOnceTheLimitIsReachedUntilTheWindowEnds() {
        let (guarded, clock) = makeGuard()
        for _ in 0..<2 { guarded.record("alice") }
        #expect(guarded.refusal("alice") == nil, "two of three allowed: not refused yet")
        clock.advance(by: .seconds(20))
        guarded.record("alice")
        #expect(guarded.refusal("alice") == .seconds(40), "refused for the rest of the window")
        #expect(guarded.refusal("bob") == nil, "one caller's errors never refuse another")
        clock.advance(by: .seconds(40))
        #expect(guarded.refusal("alice") == nil, "a new window starts clean")
    }

    @Test func windowsStayAlignedAcrossIdlePeriods() {
        let (guarded, clock) = makeGuard(limit: 1)
        clock.advance(by: .seconds(150))
        guarded.record("alice")
        // The window that began at 120 s ends at 180 s.
        #expect(guarded.refusal("alice") == .seconds(30))
    }

    @Test func pastTheKeyBoundNewCallersAreNotCountedButCountedOnesStill() {
        let (guarded, _) = makeGuard(limit: 1, maxKeys: 2)
        guarded.record("a")
        guarded.record("b")
        guarded.record("c")
        #expect(guarded.refusal("a") != nil)
        #expect(guarded.refusal("c") == nil, "not counted: never refused")
    }
}
