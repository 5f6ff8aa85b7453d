import Soma
import Synchronization
import Testing

/// A body that never answers until the test lets it: returning from `boundedCall` at all proves it
/// did not wait for the body (no timing assertion needed).
private final class HungCall: Sendable {
    private let state = Mutex<(open: Bool, cancelled: Bool)>((false, false))
    func open() { state.withLock { $0.open = true } }
    var sawCancellation: Bool { state.withLock { $0.cancelled } }

    func wait() async throws -> Int {
        while !state.withLock({ $0.open }) {
            do { try await Task.sleep(for: .milliseconds(5)) } catch {
                state.withLock { $0.cancelled = true }
                throw error
            }
        }
        return 7
    }
}

@Suite(.timeLimit(.minutes(1))) struct CallDeadlineTests {
    @Test func anAnswerBeforeTheDeadlineIsReturned() async throws {
        let value = try await boundedCall(by: .now + .seconds(60)) { 42 }
        #expect(value == 42)
        await #expect(throws: StoreError.self) {
            try await boundedCall(by: .now + .seconds(60)) { () async throws -> Int in throw StoreError(.unavailable, "down") }
        }
    }

    @Test func aHungCallIsGivenUpOnAtTheDeadlineAndCancelled() async throws {
        let gate = HungCall()
        await #expect(throws: CallDeadlineExceeded.self) {
            try await boundedCall(by: .now + .milliseconds(50)) { try await gate.wait() }
        }
        // The body's task was cancelled when the deadline won.
        for _ in 0..<400 where !gate.sawCancellation { try await Task.sleep(for: .milliseconds(5)) }
        #expect(gate.sawCancellation)
    }

    @Test func aDeadlineAlreadyPastFailsWithoutCalling() async throws {
        let called = Mutex(false)
        await #expect(throws: CallDeadlineExceeded.self) {
            try await boundedCall(by: .now - .milliseconds(1)) {
                called.withLock { $0 = true }; return 1
            }
        }
        #expect(!called.withLock { $0 })
    }

    @Test func cancellingTheCallerCancelsTheCall() async throws {
        let gate = HungCall()
        let caller = Task { try await boundedCall(by: .now + .seconds(600)) { try await gate.wait() } }
        try await Task.sleep(for: .milliseconds(20))
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        gate.open()
    }

    @Test func boundsOnlyTighten() async throws {
        let far = ContinuousClock.now + .seconds(600)
        let near = ContinuousClock.now + .seconds(1)
        let seen = await CallDeadline.within(near) { await CallDeadline.within(far) { CallDeadline.current } }
        #expect(seen == near)
        #expect(CallDeadline.current == nil)
    }
}
