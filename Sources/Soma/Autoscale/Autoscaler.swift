public import Logging
public import ServiceLifecycle

/// One instance of a stack, as its owner reports it.
public struct StackInstance: Sendable, Hashable, Codable {
    public var id: String
    /// Base URL of the instance itself (not the gateway), e.g. `http://127.0.0.1:8801`.
    public var url: String

    public init(id: String, url: String) {
        self.id = id
        self.url = url
    }
}

/// What the autoscaler drives: the local process stack (`scripts/stack.py`) or the compose stack
/// (`scripts/compose.py`). Each call returns when the change is complete: a new instance answers
/// `/ready` and is in the gateway's pool; a removed one left the pool before it was drained.
public protocol ScalableStack: Sendable {
    func instances() async throws -> [StackInstance]
    func scale(to count: Int) async throws
    func replace(_ instance: StackInstance) async throws
}

/// Per-instance CPU utilisation (a fraction of one instance's CPU budget), by instance id.
public protocol CPUSource: Sendable {
    func utilisation() async throws -> [String: Double]
}

/// Asks one instance's `/ready`.
public protocol ReadinessProbe: Sendable {
    func probe(_ instance: StackInstance) async -> SupervisionPolicy.Probe
}

/// What the autoscaler did, for its log, its events file and the demo's timeline.
public enum AutoscaleEvent: Sendable, Hashable {
    /// One evaluation of the policy.
    case observed(instances: Int, meanCPU: Double?, reason: String, windowSeconds: Double?)
    /// The count changed; `seconds` from the decision to the stack reporting the change complete
    /// (for a scale-up: the new instance ready and in the pool).
    case scaled(from: Int, to: Int, reason: String, meanCPU: Double?, seconds: Double)
    /// An instance was replaced after failing its probes.
    case replaced(instance: String, probe: String, seconds: Double)
    /// A stack, CPU or probe call failed; the loop goes on.
    case failed(action: String, error: String)
}

/// The autoscaler and supervisor (`soma autoscale`): every `interval` it reads the stack's
/// instances and their CPU, applies ``ScalingPolicy``, and scales the stack; every
/// `superviseInterval` it probes each instance's `/ready` and replaces, by ``SupervisionPolicy``,
/// those that are dead or failing. One loop does both, so a replacement and a scaling step never
/// overlap. Every decision is logged, counted in `soma_autoscale_decisions_total{reason}` and
/// passed to `events`.
public actor Autoscaler<C: Clock>: Service where C.Duration == Duration {
    public struct Timing: Sendable {
        public var interval: Duration
        public var superviseInterval: Duration

        public init(interval: Duration = .seconds(10), superviseInterval: Duration = .seconds(10)) {
            self.interval = interval
            self.superviseInterval = superviseInterval
        }
    }

    private let stack: any ScalableStack
    private let cpu: any CPUSource
    private let readiness: any ReadinessProbe
    private let clock: C
    private let timing: Timing
    private let metrics: SomaMetrics
    private let logger: Logger
    private let events: @Sendable (AutoscaleEvent) -> Void
    private var policy: ScalingPolicy<C.Instant>
    private var supervision: SupervisionPolicy
    private var nextSupervision: C.Instant?
    private var lastReason: ScalingPolicy<C.Instant>.Reason?

    public init(
        stack: any ScalableStack,
        cpu: any CPUSource,
        readiness: any ReadinessProbe,
        policy: ScalingConfiguration,
        failuresBeforeReplace: Int = 3,
        timing: Timing = .init(),
        clock: C,
        metrics: SomaMetrics,
        logger: Logger,
        events: @escaping @Sendable (AutoscaleEvent) -> Void = { _ in }
    ) {
        self.stack = stack
        self.cpu = cpu
        self.readiness = readiness
        self.policy = ScalingPolicy(configuration: policy)
        self.supervision = SupervisionPolicy(failuresBeforeReplace: failuresBeforeReplace)
        self.timing = timing
        self.clock = clock
        self.metrics = metrics
        self.logger = logger
        self.events = events
        metrics.set(SomaMetrics.Name.autoscaleMinInstances, [], Double(policy.minInstances))
        metrics.set(SomaMetrics.Name.autoscaleMaxInstances, [], Double(policy.maxInstances))
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.tick()
                do { try await self.clock.sleep(for: self.timing.interval) } catch { return }  // cancelled: shutting down
            }
        }
    }

    /// One round: supervision when it is due, then one policy evaluation and its action.
    public func tick() async {
        let instances: [StackInstance]
        do {
            instances = try await stack.instances()
        } catch {
            if Task.isCancelled { return }  // shutting down: the control script was stopped with us
            return failed("instances", error)
        }
        var current = instances
        let now = clock.now
        if nextSupervision.map({ now >= $0 }) ?? true {
            nextSupervision = now.advanced(by: timing.superviseInterval)
            current = await supervise(instances)
        }
        await scale(current)
    }

    private func supervise(_ instances: [StackInstance]) async -> [StackInstance] {
        let probes = await withTaskGroup(of: (String, SupervisionPolicy.Probe).self) { group in
            for instance in instances {
                group.addTask { (instance.id, await self.readiness.probe(instance)) }
            }
            var probes: [String: SupervisionPolicy.Probe] = [:]
            for await (id, probe) in group { probes[id] = probe }
            return probes
        }
        for id in supervision.observe(probes) {
            guard let instance = instances.first(where: { $0.id == id }) else { continue }
            let why =
                switch probes[id] {
                case .failing(let detail)?: "failing: \(detail)"
                case .unreachable(let detail)?: "unreachable: \(detail)"
                default: "unknown"
                }
            logger.warning("replacing an instance", metadata: ["soma.instance": .string(id), "soma.probe": .string(why)])
            let started = clock.now
            do {
                try await Self.uncancelled { try await self.stack.replace(instance) }
            } catch {
                failed("replace \(id)", error)
                continue
            }
            let seconds = started.duration(to: clock.now) / .seconds(1)
            metrics.increment(SomaMetrics.Name.autoscaleReplacements)
            logger.notice("instance replaced", metadata: ["soma.instance": .string(id), "soma.seconds": .stringConvertible(seconds)])
            events(.replaced(instance: id, probe: why, seconds: seconds))
        }
        return instances
    }

    private func scale(_ instances: [StackInstance]) async {
        var utilisation: [String: Double]
        do {
            utilisation = try await cpu.utilisation()
        } catch {
            failed("cpu", error)
            utilisation = [:]
        }
        let ids = Set(instances.map(\.id))
        utilisation = utilisation.filter { ids.contains($0.key) }  // a stale series of a removed instance is not load
        let decision = policy.observe(at: clock.now, instances: instances.count, cpu: utilisation)
        let reason = decision.reason.rawValue
        metrics.increment(SomaMetrics.Name.autoscaleDecisions, [("reason", reason)])
        metrics.set(SomaMetrics.Name.autoscaleDesired, [], Double(decision.desired))
        metrics.set(SomaMetrics.Name.autoscaleInstances, [], Double(instances.count))
        if let mean = decision.meanCPU { metrics.set(SomaMetrics.Name.autoscaleCPU, [], mean) }
        events(.observed(instances: instances.count, meanCPU: decision.meanCPU, reason: reason, windowSeconds: decision.windowAge.map { $0 / .seconds(1) }))
        var metadata: Logger.Metadata = [
            "soma.instances": .stringConvertible(instances.count), "soma.desired": .stringConvertible(decision.desired),
            "soma.reason": .string(reason),
        ]
        if let mean = decision.meanCPU { metadata["soma.cpu"] = .stringConvertible((mean * 1000).rounded() / 1000) }
        if decision.reason != lastReason {
            logger.info("autoscale decision", metadata: metadata)
        } else {
            logger.debug("autoscale decision", metadata: metadata)
        }
        lastReason = decision.reason
        guard decision.desired != instances.count else { return }
        let started = clock.now
        logger.notice("scaling", metadata: metadata)
        do {
            try await Self.uncancelled { [stack] in try await stack.scale(to: decision.desired) }
        } catch {
            return failed("scale to \(decision.desired)", error)
        }
        let seconds = started.duration(to: clock.now) / .seconds(1)
        metrics.set(SomaMetrics.Name.autoscaleScaleSeconds, [("direction", decision.desired > instances.count ? "up" : "down")], seconds)
        logger.notice("scaled", metadata: metadata.merging(["soma.seconds": .stringConvertible((seconds * 100).rounded() / 100)]) { $1 })
        events(.scaled(from: instances.count, to: decision.desired, reason: reason, meanCPU: decision.meanCPU, seconds: seconds))
    }

    /// Runs a step on the stack to its end even when shutdown cancels the loop meanwhile: a
    /// stack left half-scaled (an instance started but not in the pool) is worse than a late exit.
    private static func uncancelled(_ step: @escaping @Sendable () async throws -> Void) async throws {
        try await Task { try await step() }.value
    }

    private func failed(_ action: String, _ error: any Error) {
        metrics.increment(SomaMetrics.Name.autoscaleFailures, [("action", String(action.prefix { $0 != " " }))])
        logger.error("autoscale step failed", metadata: ["soma.action": .string(action), "soma.error": .string("\(error)")])
        events(.failed(action: action, error: "\(error)"))
    }
}
