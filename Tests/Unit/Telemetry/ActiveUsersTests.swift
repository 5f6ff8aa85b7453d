import Foundation
import Soma
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ActiveUsersTests {
    @Test func usersCountOnceHoweverOftenTheyCall() {
        let clock = ManualClock()
        let users = ActiveUsers(clock: clock)
        #expect(users.count() == 0)
        for _ in 0..<5 { users.record("a") }
        users.record("b")
        clock.advance(by: .seconds(10))
        users.record("b")
        #expect(users.count() == 2)
        #expect(users.isActive("a") && users.isActive("b") && !users.isActive("c"))
    }

    @Test func userDropsOutAfterTheWindow() {
        let clock = ManualClock()
        let users = ActiveUsers(window: .seconds(60), clock: clock)
        users.record("a")
        clock.advance(by: .seconds(30))
        users.record("b")
        #expect(users.count() == 2)
        clock.advance(by: .seconds(31))
        #expect(!users.isActive("a"))
        #expect(users.isActive("b"))
        #expect(users.count() == 1)
        clock.advance(by: .seconds(30))
        #expect(users.count() == 0)
    }

    @Test func recordingAgainRefreshes() {
        let clock = ManualClock()
        let users = ActiveUsers(window: .seconds(60), clock: clock)
        users.record("a")
        clock.advance(by: .seconds(50))
        users.record("a")
        clock.advance(by: .seconds(50))
        #expect(users.count() == 1)
        #expect(users.isActive("a"))
        clock.advance(by: .seconds(11))
        #expect(users.count() == 0)
        users.record("a")
        #expect(users.count() == 1)
    }

    /// Over the bound the least recently seen users go first; the newest always stay.
    @Test func boundHolds() {
        let clock = ManualClock()
        let users = ActiveUsers(maxTracked: 10, clock: clock)
        for k in 0..<100 {
            users.record("u\(k)")
            #expect(users.count() <= 10)
            clock.advance(by: .milliseconds(1))
        }
        #expect((91..<100).allSatisfy { users.isActive("u\($0)") })
        #expect(!users.isActive("u0"))

        // All seen at the same instant: the bound still holds and the caller just recorded stays.
        let tied = ActiveUsers(maxTracked: 1, clock: ManualClock())
        for k in 0..<5 { tied.record("t\(k)") }
        #expect(tied.count() == 1)
        #expect(tied.isActive("t4"))
    }

    @Test func concurrentRecordsAreAllCounted() {
        let users = ActiveUsers()
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            for k in 0..<1_000 { users.record("u\((thread * 1_000 + k) % 2_000)") }
        }
        #expect(users.count() == 2_000)
    }
}
