import Foundation

/// What a load run does, fixed before it starts and written into its report.
///
/// Every virtual user has its own `X-User-Id`, tier and keep-alive connection and sends on a fixed
/// schedule: request k of user u is due at `origin + phase(u) + k·period`, with the phases spread
/// evenly over one period, so the users together arrive at `users / period` requests a second.
/// The same schedule expresses a fixed total arrival rate (`period = users / rate`). Open loop: a
/// request is sent when it is due whether or not the user's previous one has answered, and its
/// latency counts from when it was due, so a stalled server shows in the percentiles instead of
/// slowing the generator down (no coordinated omission).
public struct LoadScenario: Sendable, Codable {
    public var baseURL: String
    /// Virtual users, each with its own connection (the brief: 1000).
    public var users: Int = 1000
    /// Requests per user per minute (the brief: 10). Ignored when `arrivalRate` is set.
    public var perUserPerMinute: Double = 10
    /// A fixed total arrival rate, requests a second, instead of the per-user schedule.
    public var arrivalRate: Double?
    /// Users start one after another over this time.
    public var rampUpSeconds: Double = 30
    /// After the ramp, not counted in the figures (caches and connections settle).
    public var warmUpSeconds: Double = 30
    /// The measured window.
    public var durationSeconds: Double = 300
    public var mix: RouteMix = .brief
    /// The share of analysis requests on a text never seen before (made unique per request).
    public var newTextShare: Double = 0.2
    /// The exponent of the Zipf law texts are drawn with, over the corpus in its file order.
    public var zipfExponent: Double = 1.0
    /// Tier weights: premium, standard, free.
    public var tierWeights: [Double] = [0.1, 0.6, 0.3]
    /// Sent as `Authorization: Bearer` when the target requires it (never written to the report).
    public var serviceToken: String?
    public var requestTimeoutSeconds: Double = 10
    public var seed: UInt64 = 20_261_206
    /// A prefix for user ids, so runs do not share users (their rate limits, entries, profiles).
    public var runID: String = "load"

    public init(baseURL: String) { self.baseURL = baseURL }

    /// Seconds between two requests of one user.
    public var period: Double {
        if let arrivalRate { return Double(users) / arrivalRate }
        return 60 / perUserPerMinute
    }

    /// Requests a second of all users together.
    public var offeredRate: Double { Double(users) / period }

    /// Seconds from the origin at which the measured window starts and ends.
    public var measuredStart: Double { rampUpSeconds + warmUpSeconds }
    public var measuredEnd: Double { measuredStart + durationSeconds }

    enum CodingKeys: String, CodingKey {
        case baseURL, users, perUserPerMinute, arrivalRate, rampUpSeconds, warmUpSeconds, durationSeconds, mix,
            newTextShare, zipfExponent, tierWeights, requestTimeoutSeconds, seed, runID
    }
}

extension LoadScenario {
    /// The tiers, in `tierWeights`' order.
    public static let tiers = ["premium", "standard", "free"]

    /// Parses `premium=10,standard=60,free=30` into `tierWeights` (a tier left out weighs 0).
    public static func tierWeights(parsing text: String) throws -> [Double] {
        var weights = [0.0, 0.0, 0.0]
        for part in text.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let index = tiers.firstIndex(of: String(pair[0])), let weight = Double(pair[1]), weight >= 0
            else { throw LoadError("tiers: '\(part)' is not tier=weight with a tier among \(tiers)") }
            weights[index] = weight
        }
        guard weights.reduce(0, +) > 0 else { throw LoadError("tiers: the weights sum to zero") }
        return weights
    }
}

/// The kinds of request a run sends.
public enum Route: String, Sendable, Codable, CaseIterable, Comparable {
    case analyze = "POST /v1/analyze"
    case module = "POST /v1/{module}"
    case batch = "POST /v1/analyze/batch"
    case entryWrite = "POST /v1/entries"
    case entryList = "GET /v1/entries"
    case profile = "GET /v1/profile"

    public static func < (a: Route, b: Route) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// For capacity: what the request costs the service.
    public var isWrite: Bool { self == .entryWrite }
}

/// Weighted routes. The brief's mix (fixed before measuring, docs/PERFORMANCE.md): half full
/// analyses, the rest single modules, batches, entry writes with an Idempotency-Key, listings
/// and profiles.
public struct RouteMix: Sendable, Codable {
    public var weights: [Route: Double]

    public init(_ weights: [Route: Double]) { self.weights = weights }

    public static let brief = RouteMix([
        .analyze: 0.50, .module: 0.15, .batch: 0.05, .entryWrite: 0.10, .entryList: 0.10, .profile: 0.10,
    ])

    /// Parses `analyze=50,entryWrite=10,...` (names as in `Route.key`).
    public init(parsing text: String) throws {
        var weights: [Route: Double] = [:]
        for part in text.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let route = Route.allCases.first(where: { $0.key == pair[0] }),
                let weight = Double(pair[1]), weight >= 0
            else { throw LoadError("mix: '\(part)' is not route=weight with a route among \(Route.allCases.map(\.key))") }
            weights[route] = weight
        }
        guard weights.values.reduce(0, +) > 0 else { throw LoadError("mix: the weights sum to zero") }
        self.weights = weights
    }

    func pick(_ unit: Double) -> Route {
        let total = weights.values.reduce(0, +)
        var acc = 0.0
        for route in Route.allCases {
            acc += (weights[route] ?? 0) / total
            if unit < acc { return route }
        }
        return Route.allCases.last(where: { (weights[$0] ?? 0) > 0 })!
    }
}

extension Route {
    /// The short name used on the command line and in CSV columns.
    public var key: String {
        switch self {
        case .analyze: "analyze"
        case .module: "module"
        case .batch: "batch"
        case .entryWrite: "entryWrite"
        case .entryList: "entryList"
        case .profile: "profile"
        }
    }
}

public struct LoadError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// SplitMix64: small, fast, and the same sequence for the same seed on every machine.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
