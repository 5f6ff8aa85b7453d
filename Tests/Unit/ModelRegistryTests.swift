import Soma
import Synchronization
import Testing

struct ModelRegistryTests {
    /// A loader that counts its calls, can be held at a gate and can be told to fail.
    final class CountingLoader: Sendable {
        struct Failure: Error {}

        private let state = Mutex((calls: 0, failuresLeft: 0))
        let gate: Gate?

        init(failures: Int = 0, gate: Gate? = nil) {
            self.gate = gate
            state.withLock { $0.failuresLeft = failures }
        }

        var calls: Int { state.withLock { $0.calls } }

        func load(_ module: Module) async throws -> ModuleModel {
            let fail = state.withLock { s -> Bool in
                s.calls += 1
                guard s.failuresLeft > 0 else { return false }
                s.failuresLeft -= 1
                return true
            }
            await gate?.wait()
            if fail { throw Failure() }
            return try ModelRegistryTests.model(module)
        }
    }

    /// Suspends callers of `wait()` until `open()`.
    final class Gate: Sendable {
        private let state = Mutex((open: false, waiters: [CheckedContinuation<Void, Never>]()))

        func wait() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.open { return true }
                    s.waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }

        func open() {
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                s.open = true
                defer { s.waiters = [] }
                return s.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    static func model(_ module: Module) throws -> ModuleModel {
        try ModelSource.parse(module, text: module == .emotion ? "happy\tlex\tvalence=2\t-\n" : "")
    }

    /// Polls `condition`, yielding in between, a bounded number of times.
    static func eventually(_ condition: () async -> Bool) async -> Bool {
        for _ in 0..<100_000 {
            if await condition() { return true }
            await Task.yield()
        }
        return await condition()
    }

    static func state(_ registry: ModelRegistry, _ module: Module = .emotion) async -> ModelRegistry.ModelState {
        await registry.state(of: module)
    }

    @Test(.timeLimit(.minutes(1)))
    func concurrentFirstUsesLoadOnce() async throws {
        let gate = Gate()
        let loader = CountingLoader(gate: gate)
        let registry = ModelRegistry(loader: loader.load)

        async let results: [Int] = withTaskGroup(of: Int.self) { group in
            for _ in 0..<100 {
                group.addTask {
                    (try? await registry.withModel(.emotion) { $0.patterns.count }) ?? -1
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        // Every use is waiting on the one load before it may finish.
        let allWaiting = await Self.eventually { await Self.state(registry).inUse == 100 }
        gate.open()
        let counts = await results

        #expect(allWaiting)
        #expect(loader.calls == 1)
        #expect(counts.count == 100)
        #expect(counts.allSatisfy { $0 == 1 })
        let state = await Self.state(registry)
        #expect(state.loaded && state.inUse == 0 && state.loads == 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func unloadsAfterIdleTimeout() async throws {
        let clock = ManualClock()
        let loader = CountingLoader()
        let registry = ModelRegistry(loader: loader.load, idleTimeout: .seconds(600), clock: clock)

        _ = try await registry.withModel(.emotion) { $0.version }
        clock.advance(by: .seconds(599))
        #expect(await registry.sweep() == [])
        clock.advance(by: .seconds(1))
        #expect(await registry.sweep() == [.emotion])
        #expect(await Self.state(registry).loaded == false)

        _ = try await registry.withModel(.emotion) { $0.version }
        #expect(loader.calls == 2)
        #expect(await Self.state(registry).loaded)
    }

    @Test(.timeLimit(.minutes(1)))
    func neverUnloadsWhileInUse() async throws {
        let clock = ManualClock()
        let gate = Gate()
        let registry = ModelRegistry(loader: CountingLoader().load, clock: clock)

        let use = Task {
            try await registry.withModel(.emotion) { _ in await gate.wait() }
        }
        let inUse = await Self.eventually {
            let state = await Self.state(registry)
            return state.inUse == 1 && state.loaded
        }
        try #require(inUse)

        clock.advance(by: .seconds(3600))
        #expect(await registry.sweep() == [])
        #expect(await registry.unload(.emotion) == false)

        gate.open()
        try await use.value
        #expect(await Self.state(registry).inUse == 0)
        clock.advance(by: .seconds(600))
        #expect(await registry.sweep() == [.emotion])
        #expect(await registry.unload(.emotion) == false)
    }

    @Test(.timeLimit(.minutes(1)))
    func releasesWhenBodyThrows() async throws {
        struct BodyError: Error {}
        let registry = ModelRegistry(loader: CountingLoader().load)

        await #expect(throws: BodyError.self) {
            try await registry.withModel(.emotion) { _ in throw BodyError() }
        }
        #expect(await Self.state(registry).inUse == 0)
        #expect(await registry.unload(.emotion))
    }

    @Test(.timeLimit(.minutes(1)))
    func releasesWhenCancelled() async throws {
        let registry = ModelRegistry(loader: CountingLoader().load)

        let use = Task {
            try await registry.withModel(.emotion) { _ in try await Task.sleep(for: .seconds(60)) }
        }
        #expect(await Self.eventually { await Self.state(registry).inUse == 1 })
        use.cancel()
        await #expect(throws: CancellationError.self) { try await use.value }
        #expect(await Self.state(registry).inUse == 0)
        #expect(await registry.unload(.emotion))
    }

    @Test(.timeLimit(.minutes(1)))
    func failedLoadIsRetried() async throws {
        let loader = CountingLoader(failures: 1)
        let events = Mutex<[ModelRegistry.Event]>([])
        let registry = ModelRegistry(loader: loader.load, onEvent: { event in events.withLock { $0.append(event) } })

        await #expect(throws: CountingLoader.Failure.self) {
            try await registry.withModel(.emotion) { $0.patterns.count }
        }
        var state = await Self.state(registry)
        #expect(!state.loaded && state.inUse == 0 && state.loads == 1 && state.loadFailures == 1)

        let count = try await registry.withModel(.emotion) { $0.patterns.count }
        #expect(count == 1)
        #expect(loader.calls == 2)
        state = await Self.state(registry)
        #expect(state.loaded && state.loads == 2)

        let recorded = events.withLock { $0 }
        #expect(recorded.count == 2)
        if case .loadFailed(.emotion, _) = recorded.first {} else { Issue.record("expected loadFailed, got \(recorded)") }
        if case .loaded(.emotion, _) = recorded.last {} else { Issue.record("expected loaded, got \(recorded)") }
    }

    @Test(.timeLimit(.minutes(1)))
    func statesReflectLifecycle() async throws {
        let clock = ManualClock()
        let gate = Gate()
        let registry = ModelRegistry(loader: CountingLoader().load, clock: clock, sizeOf: { $0.patterns.count * 100 })

        let initial = await registry.states()
        #expect(initial.map(\.module) == Module.allCases)
        #expect(initial.allSatisfy { $0 == ModelRegistry.ModelState(module: $0.module) })

        clock.advance(by: .seconds(5))
        try await registry.load(.emotion)
        #expect(
            await Self.state(registry)
                == ModelRegistry.ModelState(module: .emotion, loaded: true, bytes: 100, loads: 1, lastUse: .seconds(5))
        )

        let use = Task { try await registry.withModel(.emotion) { _ in await gate.wait() } }
        #expect(await Self.eventually { await Self.state(registry).inUse == 1 })
        clock.advance(by: .seconds(10))
        gate.open()
        try await use.value

        #expect(await registry.unload(.emotion))
        let states = await registry.states()
        #expect(
            states[0] == ModelRegistry.ModelState(module: .emotion, loads: 1, unloads: 1, lastUse: .seconds(15))
        )
        #expect(states.dropFirst().allSatisfy { $0 == ModelRegistry.ModelState(module: $0.module) })
    }

    @Test(.timeLimit(.minutes(1)))
    func idleSweeperUnloads() async throws {
        let clock = ManualClock()
        let events = Mutex<[ModelRegistry.Event]>([])
        let registry = ModelRegistry(
            loader: CountingLoader().load,
            idleTimeout: .seconds(600),
            clock: clock,
            onEvent: { event in events.withLock { $0.append(event) } }
        )
        _ = try await registry.withModel(.emotion) { $0.version }

        let sweeper = Task { await registry.runIdleSweeper(interval: .seconds(60)) }
        defer { sweeper.cancel() }

        for step in 1...10 {
            // Wait until the sweeper sleeps again (it has swept after the previous step).
            try #require(await Self.eventually { clock.sleeperCount == 1 })
            #expect(await Self.state(registry).loaded, "unloaded early at step \(step)")
            clock.advance(by: .seconds(60))
        }
        let unloaded = await Self.eventually { await !Self.state(registry).loaded }
        #expect(unloaded)
        #expect(await Self.state(registry).unloads == 1)
        #expect(events.withLock { $0.last } == .unloaded(.emotion))

        sweeper.cancel()
        await sweeper.value
    }
}
