import Dispatch
import Soma
import Synchronization
import Testing

/// Serialized because several tests block a thread of the shared cooperative pool inside `process`
/// (it is synchronous work); run in parallel, they could take every pool thread at once and stall
/// the tasks that would release them.
@Suite(.serialized)
struct BatcherTests {
    @Test(.timeLimit(.minutes(1)))
    func everySubmitterGetsItsOwnOutput() async throws {
        let batcher = Batcher<Int, String>(configuration: .init(maxBatchSize: 8, workers: 2)) { batch in
            batch.map { "out-\($0)" }
        }
        let answered = try await withRunning(batcher) {
            try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for i in 0..<200 {
                    group.addTask { (i, try await batcher.submit(i, tier: Tier.allCases[i % 3])) }
                }
                var answered = 0
                for try await (input, output) in group {
                    #expect(output == "out-\(input)")
                    answered += 1
                }
                return answered
            }
        }
        #expect(answered == 200)
        let stats = batcher.stats()
        #expect(stats.items == 200)
        #expect(stats.batches >= 200 / 8 && stats.batches <= 200)
        #expect(stats.meanBatchSize >= 1)
        #expect(stats.queueDepth == [.premium: 0, .standard: 0, .free: 0])
        #expect(stats.cancelled == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func waitingSubmissionsAreGroupedIntoBatches() async throws {
        let gate = Gate()
        let sizes = Recorder<Int>()
        let batcher = Batcher<Int, Int>(configuration: .init(maxBatchSize: 8, workers: 1)) { batch in
            sizes.append(batch.count)
            if batch.contains(-1) { gate.wait() }
            return batch
        }
        try await withRunning(batcher) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    let output = try await batcher.submit(-1)
                    #expect(output == -1)
                }
                try await eventually("the first batch is running") { gate.arrivals == 1 }
                for i in 0..<16 {
                    group.addTask {
                        let output = try await batcher.submit(i)
                        #expect(output == i)
                    }
                }
                try await eventually("16 submissions are queued") { batcher.stats().depth == 16 }
                gate.open()
                try await group.waitForAll()
            }
        }
        let recorded = sizes.values
        #expect(recorded.first == 1)
        let later = recorded.dropFirst()
        #expect(later.reduce(0, +) == 16)
        #expect(later.allSatisfy { $0 > 1 && $0 <= 8 }, "batch sizes: \(recorded)")
        #expect(Array(later) == [8, 8], "a backlog of 16 goes as two full batches")
        #expect(batcher.stats().maxQueueDepth == 16)
    }

    @Test(.timeLimit(.minutes(1)), arguments: [1, 8])
    func waitingWorkIsServedByTier(maxBatchSize: Int) async throws {
        let gate = Gate()
        let order = Recorder<String>()
        let batcher = Batcher<String, String>(configuration: .init(maxBatchSize: maxBatchSize, workers: 1)) { batch in
            order.append(contentsOf: batch)
            if batch.contains("blocker") { gate.wait() }
            return batch
        }
        try await withRunning(batcher) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await batcher.submit("blocker", tier: .free) }
                try await eventually("the blocker is running") { gate.arrivals == 1 }
                for tier in [Tier.free, .standard, .premium] {
                    group.addTask {
                        let output = try await batcher.submit(tier.rawValue, tier: tier)
                        #expect(output == tier.rawValue)
                    }
                    try await eventually("\(tier) is queued") { batcher.stats().queueDepth[tier] == 1 }
                }
                gate.open()
                try await group.waitForAll()
            }
        }
        #expect(order.values == ["blocker", "premium", "standard", "free"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aPartialBatchWaitsForMaxQueueDelayOnTheClock() async throws {
        let clock = ManualClock()
        let processed = Recorder<Int>()
        let configuration = Batcher<Int, Int>.Configuration(maxBatchSize: 4, maxQueueDelay: .milliseconds(10), workers: 1)
        let batcher = Batcher<Int, Int>(configuration: configuration, clock: clock) { batch in
            processed.append(contentsOf: batch)
            return batch
        }
        try await withRunning(batcher) {
            try await withThrowingTaskGroup(of: Int.self) { group in
                group.addTask { try await batcher.submit(7) }
                try await eventually("the worker waits on the clock") { clock.sleeperCount == 1 }
                await yield(times: 200)
                #expect(processed.values.isEmpty)

                clock.advance(by: .milliseconds(9))
                await yield(times: 200)
                #expect(processed.values.isEmpty, "9 ms is not yet the 10 ms delay")
                #expect(batcher.stats().depth == 1)

                clock.advance(by: .milliseconds(2))
                #expect(try await group.next() == 7)
                #expect(processed.values == [7])
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aFullBatchDoesNotWaitForTheDelay() async throws {
        // A real clock and an hour's delay: only an early wake-up on a full batch lets this pass.
        // (ManualClock would do, but its sleep can miss a cancellation that arrives before the
        // sleeper registers, and ending the wait early cancels the timer.)
        let sizes = Recorder<Int>()
        let configuration = Batcher<Int, Int>.Configuration(maxBatchSize: 4, maxQueueDelay: .seconds(3600), workers: 1)
        let batcher = Batcher<Int, Int>(configuration: configuration) { batch in
            sizes.append(batch.count)
            return batch
        }
        try await withRunning(batcher) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<4 {
                    group.addTask {
                        let output = try await batcher.submit(i)
                        #expect(output == i)
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(sizes.values == [4], "the worker stopped waiting as soon as the batch was full")
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingAWaitingSubmitterRemovesItsInput() async throws {
        let gate = Gate()
        let processed = Recorder<Int>()
        let batcher = Batcher<Int, Int>(configuration: .init(maxBatchSize: 8, workers: 1)) { batch in
            processed.append(contentsOf: batch)
            if batch.contains(-1) { gate.wait() }
            return batch
        }
        try await withRunning(batcher) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await batcher.submit(-1) }
                try await eventually("the first batch is running") { gate.arrivals == 1 }

                try await withThrowingTaskGroup(of: Int.self) { victim in
                    victim.addTask { try await batcher.submit(42, tier: .premium) }
                    try await eventually("42 is queued") { batcher.stats().depth == 1 }
                    victim.cancelAll()
                    await #expect(throws: CancellationError.self) { try await victim.next() }
                }
                #expect(batcher.stats().depth == 0)
                #expect(batcher.stats().cancelled == 1)

                // A submitter that is cancelled before it submits never queues.
                await withThrowingTaskGroup(of: Int.self) { early in
                    early.cancelAll()
                    early.addTask { try await batcher.submit(43) }
                    await #expect(throws: CancellationError.self) { try await early.next() }
                }

                gate.open()
                try await group.waitForAll()
            }
            #expect(try await batcher.submit(5) == 5, "the batcher still works")
        }
        #expect(processed.values == [-1, 5])
        #expect(batcher.stats().depth == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func disabledBatchingProcessesInTheCallersTask() async throws {
        let batcher = Batcher<Int, String?>(configuration: .init(enabled: false)) { batch in
            batch.map { _ in Probe.caller }
        }
        // No run(): nothing is queued, the caller computes.
        let output = try await Probe.$caller.withValue("test task") { try await batcher.submit(1) }
        #expect(output == "test task")
        let stats = batcher.stats()
        #expect(stats.batches == 1)
        #expect(stats.items == 1)
        #expect(stats.maxQueueDepth == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func cancellingRunFailsQueuedSubmissions() async throws {
        let gate = Gate()
        let processed = Recorder<Int>()
        let batcher = Batcher<Int, Int>(configuration: .init(maxBatchSize: 8, workers: 1)) { batch in
            processed.append(contentsOf: batch)
            if batch.contains(0) { gate.wait() }
            return batch
        }
        try await withThrowingTaskGroup(of: Void.self) { submissions in
            await withTaskGroup(of: Void.self) { runner in
                runner.addTask { await batcher.run() }
                submissions.addTask {
                    let output = try await batcher.submit(0)
                    #expect(output == 0, "a taken batch is finished")
                }
                try? await eventually("the first batch is running") { gate.arrivals == 1 }
                for i in 1...3 {
                    submissions.addTask {
                        await #expect(throws: CancellationError.self) { try await batcher.submit(i, tier: .premium) }
                    }
                }
                try? await eventually("three submissions are queued") { batcher.stats().depth == 3 }

                runner.cancelAll()
                try? await eventually("queued submissions fail") { batcher.stats().cancelled == 3 }
                #expect(batcher.stats().depth == 0)
                gate.open()
                await runner.waitForAll()
            }
            try await submissions.waitForAll()
        }
        #expect(processed.values == [0])
        await #expect(throws: CancellationError.self) { try await batcher.submit(9) }
    }
}

// MARK: - Helpers

extension BatcherTests {
    /// Lets a synchronous `process` block until the test opens it, and counts who reached it.
    final class Gate: Sendable {
        private let semaphore = DispatchSemaphore(value: 0)
        private let reached = Mutex(0)

        var arrivals: Int { reached.withLock { $0 } }

        /// Blocks the calling thread; gives up after 30 s so a failing test cannot hold a pool
        /// thread forever.
        func wait() {
            reached.withLock { $0 += 1 }
            _ = semaphore.wait(timeout: .now() + 30)
        }

        func open() { semaphore.signal() }
    }

    final class Recorder<Value: Sendable>: Sendable {
        private let storage = Mutex<[Value]>([])

        var values: [Value] { storage.withLock { $0 } }

        func append(_ value: Value) { storage.withLock { $0.append(value) } }
        func append(contentsOf values: [Value]) { storage.withLock { $0.append(contentsOf: values) } }
    }

    enum Probe {
        @TaskLocal static var caller: String?
    }

    struct TimedOut: Error {}

    /// Runs `body` while `batcher.run()` runs beside it, then stops the batcher.
    func withRunning<I, O, R: Sendable>(
        _ batcher: Batcher<I, O>,
        _ body: () async throws -> R
    ) async throws -> R {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await batcher.run() }
            defer { group.cancelAll() }
            return try await body()
        }
    }

    /// Polls `condition` (yielding and sleeping 1 ms between looks) for at most 10 s.
    func eventually(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting: \(what)")
                throw TimedOut()
            }
            await Task.yield()
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    func yield(times: Int) async {
        for _ in 0..<times { await Task.yield() }
    }
}

extension Batcher.Stats {
    /// Inputs waiting over all tiers.
    fileprivate var depth: Int { queueDepth.values.reduce(0, +) }
}
