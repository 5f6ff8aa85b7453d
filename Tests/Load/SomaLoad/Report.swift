import Foundation
import Histogram

/// The verdict and every figure of a run, as printed and as written (report.json, series.csv,
/// latency.png).
public struct LoadReport {
    public struct Targets: Sendable, Codable {
        /// The brief: the exit code.
        public var p95Milliseconds = 200.0
        public var errorRate = 0.01
        public var residentBytes = 200.0 * 1024 * 1024
        /// The project's own, reported beside the brief's.
        public var projectP95Milliseconds = 10.0
        public var projectP99Milliseconds = 25.0
        /// The generator is the limit when it sends this late (p99 of send lag) or burns this much CPU.
        public var maxSendLagP99Milliseconds = 20.0
        public var maxClientCores = 0.9
        public init() {}
    }

    public enum Verdict: String, Sendable { case pass, fail, invalid }

    public let result: LoadResult
    public let targets: Targets
    public var lines: [String] = []
    public var checks: [(name: String, passed: Bool, detail: String)] = []
    public var verdict: Verdict = .pass
    public var json: [String: Any] = [:]

    public init(result: LoadResult, targets: Targets = Targets()) {
        self.result = result
        self.targets = targets
        build()
    }

    private mutating func build() {
        let state = result.recorder.snapshot
        let scenario = result.scenario
        let total = state.measuredCount
        var outcomes: [Outcome: Int] = [:]
        for counts in state.outcomes.values { for (k, v) in counts { outcomes[k, default: 0] += v } }
        let errors = outcomes.filter { $0.key.isError }.values.reduce(0, +)
        let errorRate = total > 0 ? Double(errors) / Double(total) : 1
        let overall = state.overall
        func percentiles(_ h: Micros) -> [String: Double] {
            [
                "p50": ms(h.valueAtPercentile(50)), "p90": ms(h.valueAtPercentile(90)), "p95": ms(h.valueAtPercentile(95)),
                "p99": ms(h.valueAtPercentile(99)), "p99.9": ms(h.valueAtPercentile(99.9)), "max": ms(h.max),
            ]
        }
        let p = percentiles(overall)

        lines.append(
            String(
                format:
                    "scenario: %d users, %.2f req/user/min (%.1f req/s offered), ramp %.0f s, warm-up %.0f s, measured %.0f s, new texts %.0f %% of analyses, Zipf s=%.2f",
                scenario.users, 60 / scenario.period, scenario.offeredRate, scenario.rampUpSeconds, scenario.warmUpSeconds,
                scenario.durationSeconds, scenario.newTextShare * 100, scenario.zipfExponent))
        lines.append(
            String(
                format:
                    "measured: %d requests, %.1f req/s achieved; latency from the due time (open loop): p50 %.2f  p90 %.2f  p95 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms",
                total, Double(total) / scenario.durationSeconds, p["p50"]!, p["p90"]!, p["p95"]!, p["p99"]!, p["p99.9"]!, p["max"]!))
        // One group's figures (a route's, a tier's): its JSON object, and the line printed for it.
        func group(_ h: Micros, _ counts: [Outcome: Int]) -> (json: [String: Any], q: [String: Double], n: Int) {
            let q = percentiles(h)
            let n = counts.values.reduce(0, +)
            return (["requests": n, "latency_ms": q, "outcomes": Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) })], q, n)
        }
        var routes: [String: Any] = [:]
        for route in Route.allCases {
            guard let h = state.routes[route] else { continue }
            let counts = state.outcomes[route] ?? [:]
            let (json, q, n) = group(h, counts)
            routes[route.rawValue] = json
            lines.append(
                String(
                    format: "  %-24@ %7d  p50 %6.2f  p95 %6.2f  p99 %7.2f  max %8.2f ms  errors %d", route.rawValue as NSString, n,
                    q["p50"]!, q["p95"]!, q["p99"]!, q["max"]!, counts.filter { $0.key.isError }.values.reduce(0, +)))
        }
        var tiers: [String: Any] = [:]
        for tier in LoadScenario.tiers {
            guard let h = state.tiers[tier] else { continue }
            let counts = state.tierOutcomes[tier] ?? [:]
            let (json, q, n) = group(h, counts)
            let refused = (counts[.rateLimited] ?? 0) + (counts[.unavailable] ?? 0)
            tiers[tier] = json
            lines.append(
                String(
                    format: "  tier %-19@ %7d  p50 %6.2f  p95 %6.2f  p99 %7.2f  max %8.2f ms  refused (429/503) %d (%.1f %%)",
                    tier as NSString, n, q["p50"]!, q["p95"]!, q["p99"]!, q["max"]!, refused, n > 0 ? Double(refused) * 100 / Double(n) : 0))
        }
        if state.refusalsWithoutRetryAfter > 0 {
            lines.append("refusals without Retry-After: \(state.refusalsWithoutRetryAfter) (429/503 answers that did not say when to come back)")
        }
        let breakdown = Outcome.allCases.filter { $0 != .ok }.map { "\($0.rawValue) \(outcomes[$0] ?? 0)" }.joined(separator: ", ")
        lines.append(String(format: "errors: %d of %d (%.3f %%): %@", errors, total, errorRate * 100, breakdown as NSString))
        if state.retriedAfterClose > 0 {
            lines.append(
                "sent twice: \(state.retriedAfterClose) request(s) whose keep-alive connection the server closed first (a reload); the second attempt's outcome is counted"
            )
        }

        // The generator: is it the limit?
        let lagP99 = ms(state.lag.valueAtPercentile(99))
        let cores = result.clientCPUSeconds / max(result.wallSeconds, 0.001)
        lines.append(
            String(format: "generator: send lag p99 %.2f ms (max %.2f), CPU %.2f cores over %.0f s", lagP99, ms(state.lag.max), cores, result.wallSeconds))

        // The servers' own view of the same window.
        var server: [String: Any] = [:]
        if let before = result.serverBefore, let after = result.serverAfter {
            let window = after.delta(since: before)
            let hitRate = window.cacheLookups > 0 ? window.cacheHits / window.cacheLookups : 0
            server["cache_hit_rate"] = hitRate
            server["requests_counted"] = window.requests
            server["peak_resident_bytes"] = result.peakResident
            if let bucket = window.quantileBucket(0.95) {
                let clientP95 = p["p95"]! / 1000
                // Agreement: the client's p95 lies in the servers' p95 bucket, allowing for the gateway
                // and the client's own side (1 ms) above the upper bound.
                let agrees = clientP95 >= bucket.lower && clientP95 <= bucket.upper + 0.001
                server["p95_bucket_seconds"] = [bucket.lower, bucket.upper]
                server["client_p95_in_bucket"] = agrees
                lines.append(
                    String(
                        format: "servers: p95 in (%.4f, %.4f] s over %.0f requests of /v1 (the client counted %d); client p95 %.4f s: %@",
                        bucket.lower, bucket.upper, window.requests, total, clientP95,
                        (agrees ? "agrees" : "DISAGREES") as NSString))
            }
            lines.append(String(format: "servers: cache hit rate %.1f %% (%.0f lookups)", hitRate * 100, window.cacheLookups))
            let rss = result.peakResident.sorted { $0.key < $1.key }.map { String(format: "%@ %.0f MB", $0.key as NSString, $0.value / 1_048_576) }
            lines.append("servers: peak resident memory " + rss.joined(separator: ", "))
            if !after.unreachable.isEmpty { lines.append("servers: /metrics unreachable on " + after.unreachable.joined(separator: ", ")) }
        } else {
            lines.append("servers: not measured (no instances given: --stack-state or --instance)")
        }

        // The verdict: the brief's targets are the exit code.
        func check(_ name: String, _ passed: Bool, _ detail: String) { checks.append((name, passed, detail)) }
        check("p95 < \(Int(targets.p95Milliseconds)) ms", p["p95"]! < targets.p95Milliseconds, String(format: "%.2f ms", p["p95"]!))
        check("errors < \(targets.errorRate * 100) %", errorRate < targets.errorRate, String(format: "%.3f %%", errorRate * 100))
        check("no 429", (outcomes[.rateLimited] ?? 0) == 0, "\(outcomes[.rateLimited] ?? 0)")
        if result.serverAfter != nil {
            let worst = result.peakResident.values.max() ?? 0
            check(
                "every instance's RSS <= \(Int(targets.residentBytes / 1_048_576)) MB", !result.peakResident.isEmpty && worst <= targets.residentBytes,
                String(format: "max %.0f MB", worst / 1_048_576))
        }
        var verdict: Verdict = checks.allSatisfy(\.passed) ? .pass : .fail
        let saturated = lagP99 > targets.maxSendLagP99Milliseconds || cores > targets.maxClientCores
        if saturated { verdict = .invalid }
        self.verdict = verdict
        let project = String(
            format: "project targets (reported): p95 %.2f ms %@ %.0f, p99 %.2f ms %@ %.0f",
            p["p95"]!, (p["p95"]! < targets.projectP95Milliseconds ? "<" : ">=") as NSString, targets.projectP95Milliseconds,
            p["p99"]!, (p["p99"]! < targets.projectP99Milliseconds ? "<" : ">=") as NSString, targets.projectP99Milliseconds)
        lines.append(project)
        lines.append("verdict: " + checks.map { "\($0.passed ? "ok" : "FAIL") \($0.name) (\($0.detail))" }.joined(separator: "; "))
        if saturated {
            lines.append(
                String(
                    format: "verdict: INVALID, the generator was the limit (send lag p99 %.2f ms > %.0f or CPU %.2f cores > %.2f)",
                    lagP99, targets.maxSendLagP99Milliseconds, cores, targets.maxClientCores))
        }
        lines.append("verdict: \(verdict.rawValue.uppercased())")

        json = [
            "scenario": (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(scenario))) ?? [:],
            "measured": [
                "requests": total, "achieved_rate": Double(total) / scenario.durationSeconds, "latency_ms": p,
                "outcomes": Dictionary(uniqueKeysWithValues: outcomes.map { ($0.key.rawValue, $0.value) }),
                "error_rate": errorRate,
                "retried_after_connection_close": state.retriedAfterClose,
                "refusals_without_retry_after": state.refusalsWithoutRetryAfter,
            ],
            "routes": routes,
            "tiers": tiers,
            "generator": ["send_lag_p99_ms": lagP99, "cpu_cores": cores, "wall_seconds": result.wallSeconds],
            "servers": server,
            "verdict": verdict.rawValue,
            "checks": checks.map { ["name": $0.name, "passed": $0.passed, "detail": $0.detail] },
            "targets": (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(targets))) ?? [:],
        ]
    }

    /// report.json, series.csv, latency.gp and (with gnuplot) latency.png in `directory`.
    public func write(to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let report = directory + "/report.json"
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: report))
        let state = result.recorder.snapshot
        let scenario = result.scenario
        var csv = "second,phase,offered,achieved,p50_ms,p95_ms,p99_ms,errors\n"
        for (i, s) in state.seconds.enumerated() {
            let phase =
                Double(i) < scenario.rampUpSeconds
                ? "ramp"
                : Double(i) < scenario.measuredStart
                    ? "warm-up"
                    : Double(i) < scenario.measuredEnd ? "measured" : "tail"
            let errors = s.outcomes.filter { $0.key.isError }.values.reduce(0, +)
            let q =
                s.completed > 0
                ? String(
                    format: "%.3f,%.3f,%.3f", ms(s.latency.valueAtPercentile(50)), ms(s.latency.valueAtPercentile(95)), ms(s.latency.valueAtPercentile(99)))
                : ",,"
            csv += "\(i),\(phase),\(s.offered),\(s.completed),\(q),\(errors)\n"
        }
        let series = directory + "/series.csv"
        try csv.write(toFile: series, atomically: true, encoding: .utf8)
        let plot = directory + "/latency.png"
        let script = directory + "/latency.gp"
        try """
        set terminal pngcairo size 1200,600 noenhanced
        set output '\(plot)'
        set datafile separator ','
        set title 'soma-load: latency by due second (open loop), \(scenario.users) users, \(String(format: "%.0f", scenario.offeredRate)) req/s offered'
        set xlabel 'seconds since start'
        set ylabel 'latency (ms, log scale)'
        set logscale y
        set grid
        set key top right opaque box
        set arrow from first \(scenario.measuredStart), graph 0 to first \(scenario.measuredStart), graph 1 nohead dt 2 lw 1 lc rgb 'black' front
        set arrow from first \(scenario.measuredEnd), graph 0 to first \(scenario.measuredEnd), graph 1 nohead dt 2 lw 1 lc rgb 'black' front
        set label 'measured window' at first \(scenario.measuredStart), graph 0.04 offset 1,0 front
        plot '\(series)' every ::1 using 1:5 with lines lw 1 title 'p50', \\
             '' every ::1 using 1:6 with lines lw 1 title 'p95', \\
             '' every ::1 using 1:7 with lines lw 1 title 'p99', \\
             200 with lines dt 2 lw 2 lc rgb 'red' title '200 ms (brief, p95)'

        """.write(toFile: script, atomically: true, encoding: .utf8)
        var written = [report, series, script]
        let gnuplot = Process()
        gnuplot.executableURL = URL(fileURLWithPath: "/usr/bin/gnuplot")
        gnuplot.arguments = [script]
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/gnuplot") {
            try gnuplot.run()
            gnuplot.waitUntilExit()
            if gnuplot.terminationStatus == 0 { written.append(plot) }
        }
        return written
    }
}
