/// The analysis operations of the runtime as callers see them: the rate-limit budget spent, the
/// serving path run (`AnalysisService`: cache layers, admission, degradation), and its refusals
/// turned into `Refusal`s with the metrics that count them (docs/ARCHITECTURE.md §3).
public struct Analysis: Sendable {
    public let service: AnalysisService
    public let limiter: any RateLimiter
    public let tiers: TierPolicy
    let metrics: SomaMetrics

    public init(service: AnalysisService, limiter: any RateLimiter, tiers: TierPolicy, metrics: SomaMetrics) {
        self.service = service
        self.limiter = limiter
        self.tiers = tiers
        self.metrics = metrics
    }

    /// The model version string of results.
    public var modelVersion: String { service.modelVersion }

    /// `timeout` from now, on the time line deadlines are given in.
    public func deadline(in timeout: Duration) -> Duration { service.now() + timeout }

    /// Runs `body` with its store calls bounded by `deadline` (`CallDeadline`): a database that
    /// hangs is given up on then, and reads as unavailable (503), not as a request held for the
    /// driver's own timeout. `nil`: unbounded (the store's timeout alone).
    func bounded<T>(by deadline: Duration?, _ body: () async throws -> T) async throws -> T {
        guard let deadline else { return try await body() }
        return try await CallDeadline.within(ContinuousClock.now + (deadline - self.deadline(in: .zero)), body)
    }

    /// One analysis: spends one unit of the caller's budget, then runs `modules` on `text`.
    public func analyze(_ text: String, modules: [Module], caller: Caller, deadline: Duration) async throws -> AnalysisOutcome {
        try await spend(caller, cost: 1)
        return try await run(text, modules: modules, caller: caller, deadline: deadline)
    }

    /// One item of a batch: what to run, or why the front end already refused it.
    public typealias BatchItem = Result<(text: String, modules: [Module]), any Error>

    /// A batch: spends one unit per item up front (all or nothing, refused items included), then
    /// runs each item on its own; one item's refusal is that item's result, not the batch's.
    public func analyzeBatch(_ items: [BatchItem], caller: Caller, deadline: Duration) async throws -> [Result<AnalysisOutcome, any Error>] {
        try await spend(caller, cost: items.count)
        var results: [Result<AnalysisOutcome, any Error>] = []
        results.reserveCapacity(items.count)
        for item in items {
            switch item {
            case .failure(let error): results.append(.failure(error))
            case .success(let work):
                do { results.append(.success(try await run(work.text, modules: work.modules, caller: caller, deadline: deadline))) } catch {
                    results.append(.failure(error))
                }
            }
        }
        return results
    }

    /// Spends `cost` of the caller's budget; the decision is left in the caller's ledger whatever
    /// it is. Throws `Refusal(.rateLimited)` when the budget is spent.
    public func spend(_ caller: Caller, cost: Int) async throws(Refusal) {
        let decision = await limiter.acquire(user: caller.user, tier: caller.tier, cost: cost)
        caller.ledger.record(decision)
        guard decision.allowed else {
            metrics.rateLimited(tier: caller.tier)
            throw Refusal(.rateLimited, decision.reason?.description ?? "rate limit exceeded", retryAfter: decision.retryAfter ?? decision.resetAfter)
        }
    }

    /// Runs one analysis without spending budget, turning the serving path's refusals into
    /// `Refusal`s.
    func run(_ text: String, modules: [Module], caller: Caller, deadline: Duration) async throws -> AnalysisOutcome {
        do {
            return try await service.analyze(AnalysisRequest(text: text, modules: modules, user: caller.user, tier: caller.tier, deadline: deadline))
        } catch let refusal as AdmissionRefusal {
            switch refusal.reason {
            case .userConcurrency:
                metrics.rateLimited(tier: caller.tier)
                throw Refusal(
                    .rateLimited,
                    "too many concurrent requests for this user (the \(caller.tier.rawValue) tier allows \(tiers[caller.tier].maxInFlightPerUser))",
                    retryAfter: refusal.retryAfter)
            case .overloaded, .shed, .expired:
                metrics.shed(tier: caller.tier)
                throw Refusal(.overloaded, "the service is overloaded; retry later", retryAfter: refusal.retryAfter)
            }
        } catch let failure as AnalysisServiceError {
            throw failure.reason == .deadline
                ? Refusal(.deadlineExceeded, "no answer was possible before the deadline")
                : Refusal(.failed, "the analysis failed")
        }
    }
}
