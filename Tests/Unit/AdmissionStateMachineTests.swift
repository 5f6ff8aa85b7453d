import Soma
import Testing

@Suite(.timeLimit(.minutes(1)))
struct AdmissionStateMachineTests {
    typealias Machine = AdmissionStateMachine<Int>
    typealias Action = Machine.Action

    private static let far = Duration.seconds(3_600)

    private func makeMachine(
        workers: Int = 1,
        maxInFlight: Int = 256,
        maxQueued: Int = 256,
        policy: TierPolicy = TierPolicy(),
        serviceTime: Duration = .milliseconds(10),
        smoothing: Double = 0.2
    ) -> Machine {
        Machine(
            configuration: AdmissionConfiguration(
                workers: workers, maxInFlight: maxInFlight, maxQueued: maxQueued, policy: policy,
                initialServiceTime: serviceTime, serviceTimeSmoothing: smoothing
            ))
    }

    @Test
    func defaultsFollowTheArchitecture() {
        let configuration = AdmissionConfiguration()
        #expect(configuration.workers >= 1)
        #expect(configuration.maxInFlight == 256)
        #expect(configuration.policy == TierPolicy.default)
    }

    @Test
    func runsUpToWorkersAndQueuesTheRest() {
        var machine = makeMachine(workers: 2)
        var actions: [Action] = []
        for id in 1...5 {
            actions += machine.arrive(id: id, user: "u\(id)", tier: .standard, deadline: Self.far, now: .zero)
        }
        #expect(actions == [.run(1), .run(2), .enqueue(3), .enqueue(4), .enqueue(5)])
        #expect(machine.runningCount == 2)
        #expect(machine.queuedCount == 3)
        #expect(machine.inFlightCount == 5)
        #expect(machine.state(of: 1) == .running)
        #expect(machine.state(of: 3) == .queued(.standard))
        #expect(machine.state(of: 99) == nil)

        #expect(machine.finish(id: 2, now: .milliseconds(5)) == [.run(3)])
        #expect(machine.finish(id: 1, now: .milliseconds(6)) == [.run(4)])
        #expect(machine.state(of: 1) == nil, "a finished request is forgotten")
        #expect(machine.finish(id: 1, now: .milliseconds(7)) == [], "finishing twice does nothing")
        #expect(machine.finish(id: 5, now: .milliseconds(7)) == [], "a waiting request does not finish")
        #expect(machine.runningCount == 2)
        #expect(machine.queuedCount == 1)
    }

    @Test
    func servesPremiumThenStandardThenFreeAndFIFOWithinATier() {
        var machine = makeMachine(workers: 1)
        #expect(machine.arrive(id: 0, user: "busy", tier: .free, deadline: Self.far, now: .zero) == [.run(0)])
        let arrivals: [(Int, Tier)] = [(1, .free), (2, .standard), (3, .premium), (4, .free), (5, .premium), (6, .standard)]
        for (id, tier) in arrivals {
            #expect(machine.arrive(id: id, user: "u\(id)", tier: tier, deadline: Self.far, now: .zero) == [.enqueue(id)])
        }
        #expect(machine.queuedCount(tier: .premium) == 2)
        #expect(machine.queuedCount(tier: .standard) == 2)
        #expect(machine.queuedCount(tier: .free) == 2)

        var order: [Int] = []
        var running = 0
        var now = Duration.zero
        while true {
            now += .milliseconds(1)
            let actions = machine.finish(id: running, now: now)
            guard case .run(let next)? = actions.first else { break }
            #expect(actions.count == 1)
            order.append(next)
            running = next
        }
        #expect(order == [3, 5, 2, 6, 1, 4])
        #expect(machine.inFlightCount == 0)
    }

    @Test
    func perUserInFlightIsCappedByTier() {
        var machine = makeMachine(workers: 1)
        // Free: 2 in flight (one running, one waiting).
        #expect(machine.arrive(id: 1, user: "f", tier: .free, deadline: Self.far, now: .zero) == [.run(1)])
        #expect(machine.arrive(id: 2, user: "f", tier: .free, deadline: Self.far, now: .zero) == [.enqueue(2)])
        let refused = machine.arrive(id: 3, user: "f", tier: .free, deadline: Self.far, now: .zero)
        #expect(refused == [.reject(3, reason: .userConcurrency, retryAfter: .seconds(1))])
        #expect(machine.inFlight(user: "f") == 2)
        #expect(machine.state(of: 3) == nil, "a rejected request is never admitted")

        // Premium: 8.
        for id in 10..<18 {
            #expect(machine.arrive(id: id, user: "p", tier: .premium, deadline: Self.far, now: .zero) == [.enqueue(id)])
        }
        #expect(
            machine.arrive(id: 18, user: "p", tier: .premium, deadline: Self.far, now: .zero)
                == [.reject(18, reason: .userConcurrency, retryAfter: .seconds(1))])
        #expect(machine.inFlight(user: "p") == 8)

        // Once one of f's requests ends, f may send another.
        #expect(machine.finish(id: 1, now: .milliseconds(1)) == [.run(10)])
        #expect(machine.inFlight(user: "f") == 1)
        #expect(machine.arrive(id: 4, user: "f", tier: .free, deadline: Self.far, now: .milliseconds(1)) == [.enqueue(4)])

        // The cap is configurable.
        var policy = TierPolicy()
        policy[.standard].maxInFlightPerUser = 1
        var strict = makeMachine(workers: 4, policy: policy)
        #expect(strict.arrive(id: 1, user: "s", tier: .standard, deadline: Self.far, now: .zero) == [.run(1)])
        #expect(
            strict.arrive(id: 2, user: "s", tier: .standard, deadline: Self.far, now: .zero)
                == [.reject(2, reason: .userConcurrency, retryAfter: .seconds(1))])
    }

    @Test
    func fullQueueShedsTheNewestOfTheLowestTierFirst() {
        var machine = makeMachine(workers: 1, maxQueued: 3)
        #expect(machine.arrive(id: 0, user: "busy", tier: .premium, deadline: Self.far, now: .zero) == [.run(0)])
        for (id, tier) in [(1, Tier.free), (2, .free), (3, .standard)] {
            #expect(machine.arrive(id: id, user: "u\(id)", tier: tier, deadline: Self.far, now: .zero) == [.enqueue(id)])
        }

        // A premium newcomer takes the place of the newest free request.
        let premium = machine.arrive(id: 4, user: "u4", tier: .premium, deadline: Self.far, now: .zero)
        #expect(premium.count == 2)
        guard case .shed(2, let retryAfter)? = premium.first else {
            Issue.record("expected request 2 to be shed, got \(premium)")
            return
        }
        #expect(retryAfter >= .seconds(1))
        #expect(premium.last == .enqueue(4))
        #expect(machine.state(of: 2) == nil)
        #expect(machine.inFlight(user: "u2") == 0)

        // A standard newcomer sheds the last free one.
        #expect(machine.arrive(id: 5, user: "u5", tier: .standard, deadline: Self.far, now: .zero).map(\.id) == [1, 5])
        #expect(machine.queuedCount(tier: .free) == 0)

        // Nothing lower than standard waits: free and standard newcomers are refused.
        #expect(
            machine.arrive(id: 6, user: "u6", tier: .free, deadline: Self.far, now: .zero)
                == [.reject(6, reason: .overloaded, retryAfter: .seconds(1))])
        #expect(machine.arrive(id: 7, user: "u7", tier: .standard, deadline: Self.far, now: .zero).map(\.reason) == [.overloaded])

        // Premium newcomers shed the newest standard, then the next.
        #expect(machine.arrive(id: 8, user: "u8", tier: .premium, deadline: Self.far, now: .zero).map(\.id) == [5, 8])
        #expect(machine.arrive(id: 9, user: "u9", tier: .premium, deadline: Self.far, now: .zero).map(\.id) == [3, 9])
        #expect(machine.queuedCount(tier: .premium) == 3)

        // Premium is never shed: not for a free newcomer, nor for another premium one.
        #expect(machine.arrive(id: 10, user: "u10", tier: .free, deadline: Self.far, now: .zero).map(\.reason) == [.overloaded])
        #expect(machine.arrive(id: 11, user: "u11", tier: .premium, deadline: Self.far, now: .zero).map(\.reason) == [.overloaded])
        #expect(machine.queuedCount == 3)
        #expect(machine.inFlightCount == 4)
    }

    @Test
    func inFlightBoundRefusesWhenNothingLowerWaits() {
        var machine = makeMachine(workers: 2, maxInFlight: 3, maxQueued: 100)
        #expect(machine.arrive(id: 1, user: "a", tier: .free, deadline: Self.far, now: .zero) == [.run(1)])
        #expect(machine.arrive(id: 2, user: "b", tier: .free, deadline: Self.far, now: .zero) == [.run(2)])
        #expect(machine.arrive(id: 3, user: "c", tier: .free, deadline: Self.far, now: .zero) == [.enqueue(3)])
        #expect(machine.arrive(id: 4, user: "d", tier: .free, deadline: Self.far, now: .zero).map(\.reason) == [.overloaded])
        #expect(machine.arrive(id: 5, user: "e", tier: .premium, deadline: Self.far, now: .zero).map(\.id) == [3, 5])
        #expect(machine.inFlightCount == 3)

        // Running requests are never shed: with nothing waiting, even premium is refused.
        var tight = makeMachine(workers: 2, maxInFlight: 2)
        _ = tight.arrive(id: 1, user: "a", tier: .free, deadline: Self.far, now: .zero)
        _ = tight.arrive(id: 2, user: "b", tier: .free, deadline: Self.far, now: .zero)
        #expect(tight.arrive(id: 3, user: "c", tier: .premium, deadline: Self.far, now: .zero).map(\.reason) == [.overloaded])
    }

    @Test
    func refusesUpFrontWhenTheExpectedWaitPassesTheDeadline() throws {
        var machine = makeMachine(workers: 1, serviceTime: .milliseconds(100), smoothing: 0.5)
        #expect(machine.arrive(id: 1, user: "a", tier: .standard, deadline: .seconds(10), now: .zero) == [.run(1)])
        #expect(machine.arrive(id: 2, user: "b", tier: .standard, deadline: .seconds(10), now: .zero) == [.enqueue(2)])
        #expect(machine.arrive(id: 3, user: "c", tier: .standard, deadline: .seconds(10), now: .zero) == [.enqueue(3)])

        // Two ahead: it starts after ~3 × 100 ms and needs 100 ms more: 400 ms > 350 ms.
        let late = machine.arrive(id: 4, user: "d", tier: .standard, deadline: .milliseconds(350), now: .zero)
        #expect(late == [.reject(4, reason: .deadlineUnreachable, retryAfter: .seconds(1))])
        #expect(machine.arrive(id: 5, user: "e", tier: .standard, deadline: .milliseconds(400), now: .zero) == [.enqueue(5)])
        // A premium request has nobody ahead of it: 200 ms fits.
        #expect(machine.arrive(id: 6, user: "f", tier: .premium, deadline: .milliseconds(350), now: .zero) == [.enqueue(6)])
        // Already past its deadline: refused even with room.
        #expect(
            machine.arrive(id: 7, user: "g", tier: .premium, deadline: .milliseconds(10), now: .milliseconds(10)).map(\.reason)
                == [.deadlineUnreachable])
        // With a free worker a request runs whatever the estimate: running is the best that can be done.
        var idle = makeMachine(workers: 1, serviceTime: .seconds(5))
        #expect(idle.arrive(id: 1, user: "a", tier: .free, deadline: .milliseconds(100), now: .zero) == [.run(1)])

        // Faster service teaches the estimate: 100 → 55 → 32.5 ms (smoothing 0.5).
        #expect(machine.finish(id: 1, now: .milliseconds(10), serviceTime: .milliseconds(10)) == [.run(6)])
        #expect(machine.estimatedServiceTime.isClose(to: .milliseconds(55)))
        #expect(machine.finish(id: 6, now: .milliseconds(20)) == [.run(2)], "the service time is measured from .run")
        #expect(machine.estimatedServiceTime.isClose(to: .microseconds(32_500)))

        // Two ahead (2 runs; 3 and 5 wait): 3 × 32.5 + 32.5 = 130 ms fits in 200 ms; with the
        // first estimate it would not have (400 ms).
        #expect(machine.arrive(id: 8, user: "h", tier: .standard, deadline: .milliseconds(220), now: .milliseconds(20)) == [.enqueue(8)])
    }

    @Test
    func waitingRequestsExpireOnTick() {
        var machine = makeMachine(workers: 1)
        #expect(machine.arrive(id: 1, user: "a", tier: .free, deadline: Self.far, now: .zero) == [.run(1)])
        _ = machine.arrive(id: 2, user: "b", tier: .premium, deadline: .seconds(2), now: .zero)
        _ = machine.arrive(id: 3, user: "c", tier: .free, deadline: .seconds(1), now: .zero)
        _ = machine.arrive(id: 4, user: "d", tier: .standard, deadline: .seconds(1), now: .zero)
        _ = machine.arrive(id: 5, user: "e", tier: .standard, deadline: .seconds(9), now: .zero)

        #expect(machine.tick(now: .milliseconds(999)) == [])
        #expect(machine.tick(now: .seconds(1)) == [.expire(3), .expire(4)], "at the deadline, oldest first")
        #expect(machine.inFlight(user: "c") == 0)
        #expect(machine.queuedCount == 2)
        #expect(machine.tick(now: .seconds(1)) == [])
        #expect(machine.tick(now: .seconds(5)) == [.expire(2)])
        #expect(machine.tick(now: .seconds(100)) == [.expire(5)])
        #expect(machine.state(of: 1) == .running, "running requests do not expire here")
        #expect(machine.inFlightCount == 1)
    }

    @Test
    func finishSkipsAndExpiresLateRequests() {
        var machine = makeMachine(workers: 1)
        #expect(machine.arrive(id: 1, user: "a", tier: .free, deadline: Self.far, now: .zero) == [.run(1)])
        _ = machine.arrive(id: 2, user: "b", tier: .premium, deadline: .seconds(1), now: .zero)
        _ = machine.arrive(id: 3, user: "c", tier: .premium, deadline: .seconds(1), now: .zero)
        _ = machine.arrive(id: 4, user: "d", tier: .standard, deadline: .seconds(9), now: .zero)
        _ = machine.arrive(id: 5, user: "e", tier: .free, deadline: .seconds(9), now: .zero)

        #expect(machine.finish(id: 1, now: .seconds(2)) == [.expire(2), .expire(3), .run(4)])
        #expect(machine.inFlightCount == 2)
        #expect(machine.tick(now: .seconds(3)) == [], "the expired ones are gone")
        #expect(machine.finish(id: 4, now: .seconds(10)) == [.expire(5)])
        #expect(machine.inFlightCount == 0)
        #expect(machine.runningCount == 0)
    }

    @Test
    func cancelRemovesWaitingAndFreesRunningRequests() {
        var machine = makeMachine(workers: 1)
        #expect(machine.arrive(id: 1, user: "a", tier: .standard, deadline: Self.far, now: .zero) == [.run(1)])
        _ = machine.arrive(id: 2, user: "b", tier: .standard, deadline: Self.far, now: .zero)
        _ = machine.arrive(id: 3, user: "b", tier: .standard, deadline: Self.far, now: .zero)
        #expect(machine.inFlight(user: "b") == 2)

        #expect(machine.cancel(id: 2, now: .milliseconds(1)) == [], "a waiting request just leaves")
        #expect(machine.state(of: 2) == nil)
        #expect(machine.inFlight(user: "b") == 1)
        #expect(machine.queuedCount == 1)

        let before = machine.estimatedServiceTime
        #expect(machine.cancel(id: 1, now: .seconds(30)) == [.run(3)], "a running request frees its slot")
        #expect(machine.estimatedServiceTime == before, "a cancelled run teaches nothing")
        #expect(machine.inFlight(user: "a") == 0)
        #expect(machine.cancel(id: 1, now: .seconds(30)) == [], "unknown or ended ids are ignored")
        #expect(machine.cancel(id: 3, now: .seconds(31)) == [])
        #expect(machine.inFlightCount == 0)
        #expect(
            machine.arrive(id: 2, user: "b", tier: .standard, deadline: Self.far, now: .seconds(31)) == [.run(2)],
            "an ended id may be reused")
    }

    /// Thousands of random events against a model of every request's state: the bounds always hold,
    /// every action is legal for the request it names, the queue order holds whenever a waiting
    /// request starts, and every request ends exactly once.
    @Test(arguments: [1, 2, 3, 42] as [UInt64])
    func randomEventsKeepTheInvariants(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let configuration = AdmissionConfiguration(
            workers: 3, maxInFlight: 14, maxQueued: 9, initialServiceTime: .milliseconds(20), serviceTimeSmoothing: 0.3
        )
        var machine = AdmissionStateMachine<Int>(configuration: configuration)
        let users = (0..<12).map { (name: "user-\($0)", tier: Tier.allCases[$0 % 3]) }

        enum Status: Equatable {
            case queued(tier: Tier, order: Int)
            case running, ended
        }
        var status: [Int: Status] = [:]
        var owner: [Int: Int] = [:]
        var endings: [Int: Int] = [:]
        var now = Duration.zero
        var nextID = 0
        var kinds: [String: Int] = [:]

        func ended(_ id: Int) {
            endings[id, default: 0] += 1
            status[id] = .ended
        }

        func apply(_ actions: [Action], newcomer: Int?) {
            for action in actions {
                let id = action.id
                kinds[action.kind, default: 0] += 1
                switch action {
                case .run:
                    if id == newcomer {
                        #expect(status[id] == nil)
                    } else {
                        guard case .queued(let tier, let order)? = status[id] else {
                            Issue.record("run of \(id) that is not waiting: \(String(describing: status[id]))")
                            continue
                        }
                        // Nothing that should be served before it is still waiting.
                        let overtaken = status.values.contains {
                            guard case .queued(let otherTier, let otherOrder) = $0 else { return false }
                            return otherTier > tier || (otherTier == tier && otherOrder < order)
                        }
                        #expect(!overtaken, "request \(id) started ahead of its turn")
                    }
                    status[id] = .running
                case .enqueue:
                    #expect(id == newcomer)
                    status[id] = .queued(tier: users[owner[id]!].tier, order: id)
                case .reject:
                    #expect(id == newcomer)
                    ended(id)
                case .shed, .expire:
                    if case .queued? = status[id] {
                    } else {
                        Issue.record("\(action) of a request that is not waiting")
                    }
                    ended(id)
                }
            }
        }

        func checkInvariants() {
            #expect(machine.runningCount <= configuration.workers)
            #expect(machine.queuedCount <= configuration.maxQueued)
            #expect(machine.inFlightCount <= configuration.maxInFlight)
            let running = status.values.filter { $0 == .running }.count
            let queued = status.values.filter { if case .queued = $0 { true } else { false } }.count
            #expect(machine.runningCount == running)
            #expect(machine.queuedCount == queued)
            for (index, user) in users.enumerated() {
                let open = status.filter { owner[$0.key] == index && $0.value != .ended }.count
                #expect(machine.inFlight(user: user.name) == open)
                #expect(open <= configuration.policy[user.tier].maxInFlightPerUser)
            }
        }

        for step in 0..<5_000 {
            now += .milliseconds(Int.random(in: 0...8, using: &random))
            let open = status.filter { $0.value != .ended }.keys.sorted()
            let running = status.filter { $0.value == .running }.keys.sorted()
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5:
                let id = nextID
                nextID += 1
                let userIndex = Int.random(in: 0..<users.count, using: &random)
                owner[id] = userIndex
                let deadline = now + .milliseconds(Int.random(in: -5...400, using: &random))
                let actions = machine.arrive(
                    id: id, user: users[userIndex].name, tier: users[userIndex].tier, deadline: deadline, now: now
                )
                #expect(actions.last?.id == id, "the newcomer's own action comes last")
                apply(actions, newcomer: id)
            case 5..<8:
                guard let id = running.randomElement(using: &random) else { continue }
                let actions = machine.finish(id: id, now: now, serviceTime: .milliseconds(Int.random(in: 1...60, using: &random)))
                ended(id)
                apply(actions, newcomer: nil)
            case 8:
                guard let id = open.randomElement(using: &random) else { continue }
                let actions = machine.cancel(id: id, now: now)
                ended(id)
                apply(actions, newcomer: nil)
            default:
                apply(machine.tick(now: now), newcomer: nil)
            }
            if step % 7 == 0 { checkInvariants() }
        }
        checkInvariants()

        // Drain: everything still admitted ends by finishing or expiring.
        var rounds = 0
        while machine.inFlightCount > 0, rounds < 10_000 {
            rounds += 1
            now += .milliseconds(50)
            apply(machine.tick(now: now), newcomer: nil)
            for id in status.filter({ $0.value == .running }).keys.sorted() {
                let actions = machine.finish(id: id, now: now)
                ended(id)
                apply(actions, newcomer: nil)
            }
        }
        checkInvariants()
        #expect(machine.inFlightCount == 0)
        #expect(nextID > 2_000)
        #expect(endings.count == nextID, "every request ended")
        #expect(endings.values.allSatisfy { $0 == 1 }, "and exactly once")
        // The run explored every path.
        for kind in ["run", "enqueue", "shed", "expire", "userConcurrency", "overloaded", "deadlineUnreachable"] {
            #expect(kinds[kind, default: 0] > 0, "no \(kind) in \(kinds)")
        }
    }
}

extension Duration {
    /// Equal within a microsecond: the moving average is computed in floating point.
    fileprivate func isClose(to other: Duration) -> Bool {
        self - other < .microseconds(1) && other - self < .microseconds(1)
    }
}

extension AdmissionStateMachine.Action {
    /// The request an action names.
    var id: RequestID {
        switch self {
        case .run(let id), .enqueue(let id), .expire(let id): id
        case .reject(let id, _, _), .shed(let id, _): id
        }
    }

    /// The action's name, or the reason for a rejection.
    var kind: String {
        switch self {
        case .run: "run"
        case .enqueue: "enqueue"
        case .reject(_, let reason, _): "\(reason)"
        case .shed: "shed"
        case .expire: "expire"
        }
    }

    /// The rejection reason, `nil` for other actions.
    var reason: AdmissionRejectionReason? {
        if case .reject(_, let reason, _) = self { reason } else { nil }
    }
}
