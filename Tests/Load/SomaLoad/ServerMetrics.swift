import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One scrape of every instance's `/metrics`: the servers' own view of the same run, to reconcile
/// the client's figures with (latency histogram, cache lookups, resident memory).
public struct ServerSample: Sendable {
    /// `le` bound (seconds) → cumulative count, summed over instances and the `/v1` routes.
    public var latencyBuckets: [Double: Double] = [:]
    public var cacheHits = 0.0
    public var cacheLookups = 0.0
    /// Instance URL → resident memory in bytes.
    public var residentBytes: [String: Double] = [:]
    public var unreachable: [String] = []

    /// Parses the Prometheus text format (the lines this report needs).
    mutating func add(instance: String, text: String) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let series = line[..<space]
            if series.hasPrefix("soma_http_request_duration_seconds_bucket{") {
                guard let route = Self.label(series, "route"), route.hasPrefix("/v1/"), let le = Self.label(series, "le") else { continue }
                let bound = le == "+Inf" ? Double.infinity : Double(le) ?? .nan
                latencyBuckets[bound, default: 0] += value
            } else if series.hasPrefix("soma_cache_requests_total{") {
                let layer = Self.label(series, "layer")
                let hit = Self.label(series, "result") == "hit"
                // A lookup starts at L1; a hit in any layer is a hit.
                if layer == "l1" { cacheLookups += value }
                if hit { cacheHits += value }
            } else if series == "process_resident_memory_bytes" {
                residentBytes[instance] = value
            }
        }
    }

    static func label(_ series: Substring, _ name: String) -> String? {
        guard let start = series.range(of: "\(name)=\"") else { return nil }
        let rest = series[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    /// The change between two samples (the measured window).
    func delta(since before: ServerSample) -> ServerSample {
        var d = self
        d.latencyBuckets = latencyBuckets.mapValues { $0 }
        for (bound, count) in before.latencyBuckets { d.latencyBuckets[bound, default: 0] -= count }
        d.cacheHits -= before.cacheHits
        d.cacheLookups -= before.cacheLookups
        return d
    }

    /// The histogram bucket that holds the quantile: (lower, upper] in seconds.
    public func quantileBucket(_ q: Double) -> (lower: Double, upper: Double)? {
        let bounds = latencyBuckets.keys.sorted()
        guard let total = bounds.last.flatMap({ latencyBuckets[$0] }), total > 0 else { return nil }
        var lower = 0.0
        for bound in bounds {
            if latencyBuckets[bound]! >= q * total { return (lower, bound) }
            lower = bound
        }
        return nil
    }

    public var requests: Double { latencyBuckets[.infinity] ?? 0 }
}

/// Reads `/metrics` of every instance.
struct MetricsScraper: Sendable {
    let instances: [String]
    let client: HTTPClient

    func sample() async -> ServerSample {
        var sample = ServerSample()
        for instance in instances {
            do {
                let response = try await client.execute(HTTPClientRequest(url: "\(instance)/metrics"), timeout: .seconds(5))
                let body = try await response.body.collect(upTo: 16 << 20)
                guard response.status == .ok else { throw LoadError("status \(response.status.code)") }
                sample.add(instance: instance, text: String(buffer: body))
            } catch {
                sample.unreachable.append(instance)
            }
        }
        return sample
    }
}

/// The instances of a stack from its state file (`.stack/stack.json` or `.compose/compose.json`):
/// their URLs, and the service token when the stack has one.
public func stackInstances(stateFile: String) throws -> (instances: [String], token: String?) {
    guard let data = FileManager.default.contents(atPath: stateFile),
        let state = try JSONSerialization.jsonObject(with: data) as? [String: Any],
        let instances = state["instances"] as? [[String: Any]]
    else { throw LoadError("cannot read the instances from \(stateFile)") }
    var token: String?
    if let secrets = state["secrets_file"] as? String, let text = try? String(contentsOfFile: secrets, encoding: .utf8) {
        token = text.split(separator: "\n").first { $0.hasPrefix("SOMA_SERVICE_TOKEN=") }.map { String($0.dropFirst(19)) }
    }
    return (instances.compactMap { $0["url"] as? String }, token)
}
