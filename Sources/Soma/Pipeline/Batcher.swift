import Foundation
import Synchronization

/// Dynamic batching over a pool of workers: callers submit one input each and wait; workers take
/// the waiting inputs in tier order, run them through `process` together, and hand each caller its
/// own output.
///
/// Why batch: the per-call fixed costs of an analysis (model lookups, scratch buffers, cache
/// locality) are shared by a batch, and a bounded pool of about one worker per core keeps the CPU
/// busy without oversubscribing it, however many requests are in flight. Why wait: a worker that
/// finds fewer than `maxBatchSize` inputs may wait up to `maxQueueDelay` for peers; the delay is
/// counted from the arrival of the oldest waiting input, so under load (a backlog already waited)
/// batches go at once, and when idle a lone request pays at most `maxQueueDelay`. A batch is taken
/// from the head of a `TierQueue`, so premium work is served first and arrival order holds within a
/// tier.
///
/// Shape: the state (queue, parked workers, counters) lives in a `Mutex` and every change is a
/// short critical section that returns the continuations to resume; they are resumed after the
/// lock is released. A `Mutex` rather than an actor because cancellation handlers are synchronous
/// and must remove a waiting input at once, and because `process` must not run inside the state's
/// isolation: it runs in the worker's own task, with no lock held, so submissions and other
/// workers go on while a batch computes. Nothing blocks a thread: waiting callers and idle workers
/// are suspended continuations.
///
/// Lifecycle: `run()` runs the workers until its task is cancelled (it fits a
/// swift-service-lifecycle `Service`). Inputs submitted before `run()` starts wait for it. When
/// `run()` is cancelled, inputs still queued fail with `CancellationError`, batches already taken
/// finish, and from then on `submit` fails with `CancellationError`: a batcher runs once.
///
/// ```swift
/// let batcher = Batcher<String, AnalysisResults>(configuration: .init()) { texts in
///     texts.map { engine.analyze($0) }
/// }
/// // in a task group or a ServiceGroup: await batcher.run()
/// let result = try await batcher.submit(text, tier: .premium)
/// ```
public final class Batcher<Input: Sendable, Output: Sendable>: Sendable {
    /// How the batcher groups and runs work; every field has a default.
    ///
    /// The defaults come from `soma bench-batching` (docs/PERFORMANCE.md): one analysis is
    /// independent CPU work with no per-batch setup to amortise, so batching does not raise
    /// throughput on this engine, and any wait for peers costs latency — with 4 clients a 1 ms delay
    /// cut throughput fourfold. So batches take whatever is queued (up to 8) without waiting: under a
    /// backlog a worker drains several requests per wake-up, when idle nothing waits, and the queue
    /// still serves tiers in order.
    public struct Configuration: Sendable {
        /// Most inputs passed to one `process` call.
        public var maxBatchSize: Int
        /// Longest time an input waits for peers when fewer than `maxBatchSize` are queued,
        /// counted from its arrival. `.zero` takes whatever is queued at once.
        public var maxQueueDelay: Duration
        /// Number of concurrent workers that `run()` starts.
        public var workers: Int
        /// `false` turns batching off: `submit` runs `process([input])` in the caller's task.
        public var enabled: Bool

        /// One worker per active processor (at least one).
        public static var defaultWorkers: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

        public init(
            maxBatchSize: Int = 8,
            maxQueueDelay: Duration = .zero,
            workers: Int = Configuration.defaultWorkers,
            enabled: Bool = true
        ) {
            self.maxBatchSize = maxBatchSize
            self.maxQueueDelay = maxQueueDelay
            self.workers = workers
            self.enabled = enabled
        }
    }

    /// Counters for metrics, read with `stats()`.
    public struct Stats: Sendable, Equatable {
        /// `process` calls so far (inline calls included when batching is off).
        public var batches = 0
        /// Inputs handed to `process` so far.
        public var items = 0
        /// Queued inputs removed because their caller was cancelled or `run()` stopped.
        public var cancelled = 0
        /// Deepest the queue has been.
        public var maxQueueDepth = 0
        /// Inputs waiting now, by tier (every tier present).
        public var queueDepth: [Tier: Int] = [:]

        /// Mean inputs per `process` call, 0 before the first.
        public var meanBatchSize: Double { batches == 0 ? 0 : Double(items) / Double(batches) }

        public init() {}
    }

    public let configuration: Configuration
    private let clock: any Clock<Duration>
    /// Time since the batcher was made, on `clock`; arrival times are kept in this form so the
    /// state does not depend on the clock's `Instant` type.
    private let elapsed: @Sendable () -> Duration
    private let process: @Sendable ([Input]) -> [Output]
    private let state = Mutex(State())

    /// - Parameters:
    ///   - process: synchronous CPU work that maps a batch to its outputs, one per input and in the
    ///     same order. It runs on a worker's task (or the caller's, with batching off), never under
    ///     a lock.
    ///   - clock: the clock `maxQueueDelay` is measured on; tests pass a manual one.
    public init(
        configuration: Configuration = Configuration(),
        clock: any Clock<Duration> = ContinuousClock(),
        process: @escaping @Sendable ([Input]) -> [Output]
    ) {
        precondition(configuration.maxBatchSize >= 1, "maxBatchSize must be at least 1")
        precondition(configuration.workers >= 1, "workers must be at least 1")
        precondition(configuration.maxQueueDelay >= .zero, "maxQueueDelay must not be negative")
        self.configuration = configuration
        self.clock = clock
        self.elapsed = Timeline(clock: clock).now
        self.process = process
    }


    /// Processes `input` with its peers and returns its output.
    ///
    /// Suspends until a worker has run the batch holding `input`. Cancelling the caller while the
    /// input still waits removes it from the queue and throws `CancellationError`; once a worker has
    /// taken it, the output is returned as usual. Throws `CancellationError` after `run()` stopped.
    public func submit(_ input: Input, tier: Tier = .standard) async throws -> Output {
        guard configuration.enabled else { return try processInline(input) }
        let submission = Submission()
        let arrival = elapsed()
        let limits = limits
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Output, any Error>) in
                let pending = Pending(input: input, arrival: arrival, continuation: continuation)
                let action = state.withLock { $0.enqueue(pending, tier: tier, submission: submission, limits: limits) }
                switch action {
                case .none:
                    break
                case .fail:
                    continuation.resume(throwing: CancellationError())
                case .wakeWorker(let worker):
                    worker.resume(returning: .recheck)
                case .wakeCollector(let collector):
                    collector.resume()
                }
            }
        } onCancel: {
            let removed = state.withLock { $0.cancel(submission) }
            removed?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Runs `configuration.workers` workers until the calling task is cancelled.
    ///
    /// On cancellation, inputs still queued fail with `CancellationError`; batches already taken are
    /// finished and answered; then `run()` returns.
    public func run() async {
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                for _ in 0..<configuration.workers {
                    group.addTask { await self.work() }
                }
            }
        } onCancel: {
            stop()
        }
    }

    /// A snapshot of the counters and the current queue depth per tier.
    public func stats() -> Stats {
        state.withLock { state in
            var stats = state.stats
            for tier in Tier.allCases { stats.queueDepth[tier] = state.queue.count(tier: tier) }
            return stats
        }
    }

    // MARK: - Workers

    private var limits: Limits {
        Limits(maxBatchSize: configuration.maxBatchSize, maxQueueDelay: configuration.maxQueueDelay)
    }

    /// One worker: wait for work, collect a batch, process it, repeat until stopped.
    private func work() async {
        let limits = limits
        while true {
            let now = elapsed()
            let step = await withCheckedContinuation { (worker: CheckedContinuation<WorkerStep, Never>) in
                let (step, handoff) = state.withLock { $0.nextStep(for: worker, now: now, limits: limits) }
                handoff?.resume(returning: .recheck)
                if let step { worker.resume(returning: step) }
            }
            switch step {
            case .stop:
                return
            case .recheck:
                continue
            case .run(let batch):
                execute(batch)
            case .collect(let wait):
                await waitForPeers(upTo: wait)
                let (batch, handoff) = state.withLock { $0.endCollecting(limits: limits) }
                handoff?.resume(returning: .recheck)
                execute(batch)
            }
            // Workers are about one per core, as wide as the cooperative pool: give the tasks
            // that were just resumed (and new submitters) a turn before the next batch.
            await Task.yield()
        }
    }

    /// Waits until the queue holds a full batch, `wait` has passed on the clock, or `run()` stops.
    ///
    /// The timer is a child task so that a filling queue can end the wait early; whichever comes
    /// first resumes the collector, and the other is a no-op. Ending early cancels the timer, so
    /// the clock's `sleep` must end promptly on cancellation (the system clocks do).
    private func waitForPeers(upTo wait: Duration) async {
        await withDiscardingTaskGroup { group in
            group.addTask { [clock] in
                // Often cancelled before it starts (the batch filled at once): skip the sleep, which
                // also spares clocks that would miss a cancellation arriving before they register.
                if !Task.isCancelled { try? await clock.sleep(for: wait) }
                self.state.withLock { $0.signalCollector() }?.resume()
            }
            await withCheckedContinuation { (collector: CheckedContinuation<Void, Never>) in
                let signalled = state.withLock { $0.collectorWaits(collector) }
                if signalled { collector.resume() }
            }
            group.cancelAll()
        }
    }

    private func execute(_ batch: [Pending]) {
        guard !batch.isEmpty else { return }
        let outputs = process(batch.map(\.input))
        precondition(outputs.count == batch.count, "process returned \(outputs.count) outputs for \(batch.count) inputs")
        for (pending, output) in zip(batch, outputs) {
            pending.continuation.resume(returning: output)
        }
    }

    private func processInline(_ input: Input) throws -> Output {
        try Task.checkCancellation()
        state.withLock { $0.stats.record(batchOf: 1) }
        let outputs = process([input])
        precondition(outputs.count == 1, "process returned \(outputs.count) outputs for 1 input")
        return outputs[0]
    }

    private func stop() {
        let (pending, workers, collector) = state.withLock { $0.stop() }
        collector?.resume()
        for worker in workers { worker.resume(returning: .stop) }
        for item in pending { item.continuation.resume(throwing: CancellationError()) }
    }
}

// MARK: - State

extension Batcher {
    /// One waiting input and the caller to answer.
    fileprivate struct Pending: Sendable {
        var input: Input
        /// `elapsed()` when it was submitted.
        var arrival: Duration
        var continuation: CheckedContinuation<Output, any Error>
    }

    /// What a worker does next.
    fileprivate enum WorkerStep: Sendable {
        case stop
        /// Woken without a decision: look at the state again.
        case recheck
        case run([Pending])
        /// This worker collects peers for at most the given time, then takes a batch.
        case collect(Duration)
    }

    fileprivate enum SubmitAction {
        case none
        case fail
        case wakeWorker(CheckedContinuation<WorkerStep, Never>)
        case wakeCollector(CheckedContinuation<Void, Never>)
    }

    fileprivate struct Limits {
        var maxBatchSize: Int
        var maxQueueDelay: Duration
    }

    /// The worker (at most one) that waits for a partial batch to fill.
    ///
    /// Only one collects at a time so that idle workers are not all woken to race for the same few
    /// inputs; the others stay parked until there is a full batch or the collector has taken its
    /// batch and hands off the rest.
    fileprivate enum Collector {
        case none
        case collecting(signalled: Bool)
        case waiting(CheckedContinuation<Void, Never>)

        var isActive: Bool {
            if case .none = self { false } else { true }
        }
    }

    /// Everything guarded by the lock. Its methods make the decisions and return the continuations
    /// to resume; the caller resumes them after unlocking.
    fileprivate struct State: Sendable {
        var queue = TierQueue<Pending>()
        /// Idle workers, waiting for work.
        var parked: [CheckedContinuation<WorkerStep, Never>] = []
        var collector = Collector.none
        var stopped = false
        var stats = Stats()

        mutating func enqueue(_ pending: Pending, tier: Tier, submission: Submission, limits: Limits) -> SubmitAction {
            if stopped || submission.cancelled { return .fail }
            submission.ticket = queue.enqueue(pending, tier: tier)
            stats.maxQueueDepth = max(stats.maxQueueDepth, queue.count)
            if collector.isActive {
                if queue.count >= limits.maxBatchSize, let waiting = signalCollector() {
                    return .wakeCollector(waiting)
                }
                return .none
            }
            if let worker = parked.popLast() { return .wakeWorker(worker) }
            return .none
        }

        mutating func cancel(_ submission: Submission) -> Pending? {
            submission.cancelled = true
            guard let ticket = submission.ticket, let pending = queue.remove(ticket: ticket) else { return nil }
            stats.cancelled += 1
            return pending
        }

        /// Decides a worker's next step; `nil` parks it (it is resumed later with `.recheck` or
        /// `.stop`). The second value is another parked worker to wake for the rest of the queue.
        mutating func nextStep(
            for worker: CheckedContinuation<WorkerStep, Never>,
            now: Duration,
            limits: Limits
        ) -> (WorkerStep?, CheckedContinuation<WorkerStep, Never>?) {
            if stopped { return (.stop, nil) }
            let depth = queue.count
            if depth == 0 || (collector.isActive && depth < limits.maxBatchSize) {
                parked.append(worker)
                return (nil, nil)
            }
            if depth >= limits.maxBatchSize || limits.maxQueueDelay <= .zero {
                return (.run(take(limits)), handoff(limits))
            }
            let waited = now - oldestArrival()
            if waited >= limits.maxQueueDelay {
                return (.run(take(limits)), handoff(limits))
            }
            collector = .collecting(signalled: false)
            return (.collect(limits.maxQueueDelay - waited), nil)
        }

        /// Resumes or marks the collector; returns its continuation when it was suspended.
        mutating func signalCollector() -> CheckedContinuation<Void, Never>? {
            switch collector {
            case .none:
                return nil
            case .collecting:
                collector = .collecting(signalled: true)
                return nil
            case .waiting(let continuation):
                collector = .collecting(signalled: true)
                return continuation
            }
        }

        /// Suspends the collector unless it was signalled already (then the caller resumes it).
        mutating func collectorWaits(_ continuation: CheckedContinuation<Void, Never>) -> Bool {
            if case .collecting(signalled: true) = collector { return true }
            collector = .waiting(continuation)
            return false
        }

        mutating func endCollecting(limits: Limits) -> ([Pending], CheckedContinuation<WorkerStep, Never>?) {
            collector = .none
            return (take(limits), handoff(limits))
        }

        mutating func stop() -> ([Pending], [CheckedContinuation<WorkerStep, Never>], CheckedContinuation<Void, Never>?) {
            stopped = true
            var failed: [Pending] = []
            while let entry = queue.dequeue() { failed.append(entry.element) }
            stats.cancelled += failed.count
            let workers = parked
            parked = []
            return (failed, workers, signalCollector())
        }

        private mutating func take(_ limits: Limits) -> [Pending] {
            let batch = queue.dequeue(max: limits.maxBatchSize).map(\.element)
            if !batch.isEmpty { stats.record(batchOf: batch.count) }
            return batch
        }

        /// A parked worker to wake when work is left that no one else will take soon.
        private mutating func handoff(_ limits: Limits) -> CheckedContinuation<WorkerStep, Never>? {
            guard !queue.isEmpty, !parked.isEmpty else { return nil }
            if collector.isActive && queue.count < limits.maxBatchSize { return nil }
            return parked.popLast()
        }

        /// Arrival of the oldest queued input: the oldest head among the tiers (FIFO within each).
        private func oldestArrival() -> Duration {
            var oldest: (ticket: UInt64, arrival: Duration)?
            for tier in Tier.servingOrder {
                guard let head = queue.peek(tier: tier) else { continue }
                if let current = oldest, current.ticket < head.ticket { continue }
                oldest = (head.ticket, head.element.arrival)
            }
            return oldest?.arrival ?? .zero
        }
    }
}

extension Batcher.Stats {
    fileprivate mutating func record(batchOf size: Int) {
        batches += 1
        items += size
    }
}

/// Where one submission stands, for its cancellation handler, which may run before, during or after
/// the enqueue.
///
/// `@unchecked Sendable`: both fields are read and written only inside `Batcher.state.withLock`
/// (`State.enqueue` and `State.cancel`), so the lock orders every access.
private final class Submission: @unchecked Sendable {
    var ticket: UInt64?
    var cancelled = false
}
