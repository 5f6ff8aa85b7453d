import Foundation
public import Histogram
import Synchronization

/// How one request ended.
public enum Outcome: String, Sendable, Codable, CaseIterable {
    case ok = "2xx"
    case rateLimited = "429"
    case unavailable = "503"
    case serverError = "other 5xx"
    case clientError = "other 4xx"
    case timeout
    case connection = "connection failure"

    public init(status: Int) {
        switch status {
        case 200..<300: self = .ok
        case 429: self = .rateLimited
        case 503: self = .unavailable
        case 500..<600: self = .serverError
        default: self = .clientError
        }
    }

    public var isError: Bool { self != .ok }
}

/// Latency histograms in microseconds, 1 µs to 120 s at three significant digits (HdrHistogram).
typealias Micros = Histogram<UInt64>

func makeHistogram(digits: SignificantDigits = .three) -> Micros {
    Micros(lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: digits)
}

extension Histogram where Count == UInt64 {
    mutating func recordClamped(_ micros: UInt64) {
        _ = record(Swift.min(Swift.max(micros, 1), 120_000_000))
    }
}

/// Everything a run measured: the measured window per route and overall, and a time series of
/// every second from the origin (warm-up included, marked), all under one lock (a request costs
/// one short critical section; the generator's own CPU is reported to show it is not the limit).
public final class Recorder: Sendable {
    struct Second {
        var offered = 0
        var completed = 0
        var outcomes: [Outcome: Int] = [:]
        var latency = makeHistogram(digits: .two)
    }

    struct State {
        var routes: [Route: Micros] = [:]
        var outcomes: [Route: [Outcome: Int]] = [:]
        /// The same per tier (the X-User-Tier sent).
        var tiers: [String: Micros] = [:]
        var tierOutcomes: [String: [Outcome: Int]] = [:]
        /// 429 and 503 answers without a Retry-After header (a refusal must say when to come back).
        var refusalsWithoutRetryAfter = 0
        var overall = makeHistogram()
        var lag = makeHistogram()
        var seconds: [Second] = []
        var measuredCount = 0
        /// Requests sent again because the server closed their keep-alive connection first.
        var retriedAfterClose = 0
    }

    private let state = Mutex(State())
    let measuredStart: Double
    let measuredEnd: Double

    init(measuredStart: Double, measuredEnd: Double) {
        self.measuredStart = measuredStart
        self.measuredEnd = measuredEnd
    }

    func offered(at second: Double) {
        let index = Int(second)
        state.withLock { s in
            while s.seconds.count <= index { s.seconds.append(Second()) }
            s.seconds[index].offered += 1
        }
    }

    /// A request of `tier` due `due` seconds after the origin, sent `lag` late, answered after
    /// `latency` (counted from when it was due); `retryAfter`: the answer had a Retry-After header.
    func record(route: Route, tier: String, outcome: Outcome, retryAfter: Bool, due: Double, lag: Duration, latency: Duration) {
        let micros = UInt64(max(0, latency / .microseconds(1)))
        let lagMicros = UInt64(max(0, lag / .microseconds(1)))
        let index = Int(due)
        let measured = due >= measuredStart && due < measuredEnd
        state.withLock { s in
            while s.seconds.count <= index { s.seconds.append(Second()) }
            s.seconds[index].completed += 1
            s.seconds[index].outcomes[outcome, default: 0] += 1
            s.seconds[index].latency.recordClamped(micros)
            guard measured else { return }
            s.measuredCount += 1
            s.routes[route, default: makeHistogram()].recordClamped(micros)
            s.outcomes[route, default: [:]][outcome, default: 0] += 1
            s.tiers[tier, default: makeHistogram()].recordClamped(micros)
            s.tierOutcomes[tier, default: [:]][outcome, default: 0] += 1
            if (outcome == .rateLimited || outcome == .unavailable) && !retryAfter { s.refusalsWithoutRetryAfter += 1 }
            s.overall.recordClamped(micros)
            s.lag.recordClamped(lagMicros)
        }
    }

    func retriedAfterClose() {
        state.withLock { $0.retriedAfterClose += 1 }
    }

    /// Live figures: the last complete second and the measured window so far.
    func progress(second: Int) -> String {
        state.withLock { s in
            let last = second >= 0 && second < s.seconds.count ? s.seconds[second] : Second()
            let errors = last.outcomes.filter { $0.key.isError }.map { "\($0.key.rawValue)=\($0.value)" }.sorted()
            let window =
                s.measuredCount > 0
                ? String(
                    format: "measured p50 %.1f ms p95 %.1f ms (%d)", ms(s.overall.valueAtPercentile(50)),
                    ms(s.overall.valueAtPercentile(95)), s.measuredCount)
                : "warming up"
            return String(
                format: "t=%4ds offered %4d/s achieved %4d/s p50 %.1f ms p95 %.1f ms", second, last.offered,
                last.completed, ms(last.latency.valueAtPercentile(50)), ms(last.latency.valueAtPercentile(95)))
                + (errors.isEmpty ? "" : " errors " + errors.joined(separator: " ")) + "; " + window
        }
    }

    var snapshot: State { state.withLock { $0 } }

    /// Requests due in the measured window and answered (or failed).
    public var measuredCount: Int { state.withLock { $0.measuredCount } }
    /// Their latencies from the due time, microseconds.
    public var measuredLatency: Histogram<UInt64> { state.withLock { $0.overall } }
    /// How late the generator sent them, microseconds.
    public var sendLag: Histogram<UInt64> { state.withLock { $0.lag } }
}

func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }
