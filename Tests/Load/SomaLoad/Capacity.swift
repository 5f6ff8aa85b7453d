import Foundation
import Histogram

/// Capacity mode: for each route class, the arrival rate steps up (×factor per step) until p99
/// passes the bound or a request fails; the highest rate that held is the class's capacity.
///
/// Classes: `cached` (full analyses of 50 texts, warm after the first step's warm-up),
/// `uncached` (full analyses of texts never seen before), `writes` (entries with an
/// Idempotency-Key). Users (connections) grow with the rate, at most 1000; a user past 50
/// requests a minute takes a new identity every 50 requests, so the per-user rate limit is never
/// what stops a step.
public struct Capacity: Sendable {
    public let base: LoadScenario
    public let corpus: Corpus
    public let instances: [String]
    public let from: Double
    public let factor: Double
    public let stepSeconds: Double
    public let p99Bound: Double
    public let maxRate: Double

    public init(
        base: LoadScenario, corpus: Corpus, instances: [String], from: Double, factor: Double, stepSeconds: Double,
        p99Bound: Double, maxRate: Double
    ) {
        self.base = base
        self.corpus = corpus
        self.instances = instances
        self.from = from
        self.factor = factor
        self.stepSeconds = stepSeconds
        self.p99Bound = p99Bound
        self.maxRate = maxRate
    }

    public func run(progress: @escaping @Sendable (String) -> Void) async throws -> [String: Any] {
        var classes: [[String: Any]] = []
        let hot = try Corpus(texts: Array(corpus.texts.prefix(50)), exponent: 0)
        for (name, mix, newShare, texts) in [
            ("cached", RouteMix([.analyze: 1]), 0.0, hot), ("uncached", RouteMix([.analyze: 1]), 1.0, corpus),
            ("writes", RouteMix([.entryWrite: 1]), 0.0, corpus),
        ] {
            var rate = from
            var held: Double?
            var steps: [[String: Any]] = []
            var index = 0
            while rate <= maxRate {
                var scenario = base
                scenario.mix = mix
                scenario.newTextShare = newShare
                scenario.arrivalRate = rate
                scenario.users = Int(min(1000, max(32, rate / 5)))
                scenario.rampUpSeconds = 2
                scenario.warmUpSeconds = 3
                scenario.durationSeconds = stepSeconds
                scenario.runID = "\(base.runID)-\(name)-\(index)"
                let result = try await LoadRunner(scenario: scenario, corpus: texts, instances: [], progress: { _ in }).run()
                let state = result.recorder.snapshot
                let p99 = ms(state.overall.valueAtPercentile(99))
                let errors = state.outcomes.values.flatMap { $0 }.filter { $0.key.isError }.map(\.value).reduce(0, +)
                let lagP99 = ms(state.lag.valueAtPercentile(99))
                let cores = result.clientCPUSeconds / max(result.wallSeconds, 0.001)
                let achieved = Double(state.measuredCount) / stepSeconds
                let ok = p99 <= p99Bound && errors == 0
                let generatorLimited = lagP99 > 20 || cores > 0.9
                steps.append([
                    "rate": rate, "achieved": achieved, "p99_ms": p99, "p50_ms": ms(state.overall.valueAtPercentile(50)),
                    "errors": errors, "send_lag_p99_ms": lagP99, "client_cores": cores, "held": ok,
                ])
                progress(
                    String(
                        format: "capacity %@: %.0f req/s offered, %.0f achieved, p50 %.2f p99 %.2f ms, %d errors, generator lag p99 %.1f ms, %.2f cores: %@",
                        name as NSString, rate, achieved, ms(state.overall.valueAtPercentile(50)), p99, errors, lagP99, cores,
                        (ok ? "held" : "stop") as NSString))
                if !ok { break }
                held = rate
                if generatorLimited {
                    progress("capacity \(name): the generator is the limit here; the capacity is at least this rate")
                    break
                }
                rate *= factor
                index += 1
            }
            classes.append(["class": name, "highest_rate_held": held ?? 0, "p99_bound_ms": p99Bound, "steps": steps])
            progress(String(format: "capacity %@: highest rate that held %.0f req/s (p99 <= %.0f ms, no errors)", name as NSString, held ?? 0, p99Bound))
        }
        return ["classes": classes, "target": base.baseURL, "step_seconds": stepSeconds, "factor": factor]
    }
}
