import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// One request of the plan: what to send and when it is due.
struct PlannedRequest: Sendable {
    var route: Route
    var method: HTTPMethod
    var path: String
    var body: String?
    var user: String
    var tier: String
    var idempotencyKey: String?

    /// Whether sending it twice is harmless: reads, the analysis routes (a pure function of the
    /// text), and writes that carry an Idempotency-Key (the service answers a repeat with the first entry).
    var safeToRetry: Bool { route != .entryWrite || idempotencyKey != nil }
}

/// The requests of one virtual user, drawn from its own random stream (the same for the same
/// seed, so two runs send the same sequence).
struct UserPlan: Sendable {
    let index: Int
    let scenario: LoadScenario
    let corpus: Corpus
    let tier: String
    private var random: SplitMix64

    static let modules = ["emotion", "reasoning", "values", "theory-of-mind", "narrative"]
    static let tiers = LoadScenario.tiers

    init(index: Int, scenario: LoadScenario, corpus: Corpus) {
        self.index = index
        self.scenario = scenario
        self.corpus = corpus
        var random = SplitMix64(seed: scenario.seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
        let total = scenario.tierWeights.reduce(0, +)
        var unit = random.unit() * total
        var tier = Self.tiers[1]
        for (name, weight) in zip(Self.tiers, scenario.tierWeights) {
            if unit < weight {
                tier = name
                break
            }
            unit -= weight
        }
        self.tier = tier
        self.random = random
    }

    /// A user stays under the service's per-user rate (100 a minute) at any schedule: past 50 a
    /// minute its identity moves on every 50 requests (same connection, a new user id).
    func user(_ k: Int) -> String {
        let perMinute = 60 / scenario.period
        return perMinute > 50 ? "\(scenario.runID)-u\(index)-\(k / 50)" : "\(scenario.runID)-u\(index)"
    }

    mutating func text(_ k: Int) -> String {
        let unit = random.unit()
        return random.unit() < scenario.newTextShare
            ? corpus.novel(unit, tag: "\(scenario.runID) \(index).\(k)") : corpus.zipf(unit)
    }

    mutating func next(_ k: Int) -> PlannedRequest {
        let route = scenario.mix.pick(random.unit())
        var request = PlannedRequest(route: route, method: .POST, path: "/v1/analyze", user: user(k), tier: tier)
        switch route {
        case .analyze:
            request.body = Self.json(["text": text(k)])
        case .module:
            request.path = "/v1/" + Self.modules[Int(random.next() % UInt64(Self.modules.count))]
            request.body = Self.json(["text": text(k)])
        case .batch:
            let items = (0..<4).map { _ in ["text": text(k)] }
            request.path = "/v1/analyze/batch"
            request.body = Self.json(["items": items])
        case .entryWrite:
            request.path = "/v1/entries"
            request.body = Self.json(["text": corpus.zipf(random.unit())])
            request.idempotencyKey = "\(scenario.runID)-u\(index)-\(k)"
        case .entryList:
            request.method = .GET
            request.path = "/v1/entries?limit=20"
        case .profile:
            request.method = .GET
            request.path = "/v1/profile"
        }
        return request
    }

    static func json(_ value: Any) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: value), as: UTF8.self)
    }
}

/// What a run produced, before it is judged and written out.
public struct LoadResult: Sendable {
    public var scenario: LoadScenario
    public var wallSeconds: Double
    public var clientCPUSeconds: Double
    public var recorder: Recorder
    public var serverBefore: ServerSample?
    public var serverAfter: ServerSample?
    /// Highest resident memory seen per instance during the run.
    public var peakResident: [String: Double]
}

/// Runs a scenario against a base URL (a gateway or one instance).
public struct LoadRunner: Sendable {
    public let scenario: LoadScenario
    public let corpus: Corpus
    /// Instance URLs whose `/metrics` are read (none: the report has no server-side figures).
    public let instances: [String]
    public let progress: @Sendable (String) -> Void
    /// Where entry writes and their answers are recorded, for the write audit (none: not recorded).
    public let ledger: WriteLedger?

    public init(
        scenario: LoadScenario, corpus: Corpus, instances: [String], ledger: WriteLedger? = nil, progress: @escaping @Sendable (String) -> Void
    ) {
        self.scenario = scenario
        self.corpus = corpus
        self.instances = instances
        self.ledger = ledger
        self.progress = progress
    }

    public func run() async throws -> LoadResult {
        let group = MultiThreadedEventLoopGroup.singleton
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5))
        // One keep-alive connection per user, kept across the user's pauses.
        configuration.connectionPool = .init(idleTimeout: .seconds(600), concurrentHTTP1ConnectionsPerHostSoftLimit: 1)
        configuration.decompression = .disabled
        let clients = (0..<scenario.users).map { _ in HTTPClient(eventLoopGroup: group, configuration: configuration) }
        let metricsClient = HTTPClient(eventLoopGroup: group)
        let scraper = MetricsScraper(instances: instances, client: metricsClient)
        let recorder = Recorder(measuredStart: scenario.measuredStart, measuredEnd: scenario.measuredEnd)
        let clock = ContinuousClock()
        let origin = clock.now + .milliseconds(500)
        let end = scenario.measuredEnd
        let usageBefore = cpuSeconds()
        let wallStart = clock.now

        let peak = PeakResident()
        async let before: ServerSample? =
            instances.isEmpty
            ? nil
            : {
                try? await clock.sleep(until: origin + .seconds(scenario.measuredStart))
                let sample = await scraper.sample()
                peak.update(sample)
                return sample
            }()
        let watcher = Task {
            var second = 0
            while !Task.isCancelled {
                try? await clock.sleep(until: origin + .seconds(second + 1) + .milliseconds(300))
                if Task.isCancelled { break }
                progress(recorder.progress(second: second))
                if !instances.isEmpty, second % 10 == 9 { peak.update(await scraper.sample()) }
                second += 1
            }
        }

        await withTaskGroup(of: Void.self) { users in
            for u in 0..<scenario.users {
                let client = clients[u]
                users.addTask {
                    await runUser(u, client: client, recorder: recorder, origin: origin, end: end, clock: clock)
                }
            }
        }
        watcher.cancel()
        let wall = (clock.now - wallStart) / .seconds(1)
        let cpu = cpuSeconds() - usageBefore
        let serverBefore = await before
        var serverAfter: ServerSample?
        if !instances.isEmpty {
            let sample = await scraper.sample()
            peak.update(sample)
            serverAfter = sample
        }
        for client in clients { try? await client.shutdown() }
        try? await metricsClient.shutdown()
        return LoadResult(
            scenario: scenario, wallSeconds: wall, clientCPUSeconds: cpu, recorder: recorder, serverBefore: serverBefore,
            serverAfter: serverAfter, peakResident: peak.values)
    }

    private func runUser(_ u: Int, client: HTTPClient, recorder: Recorder, origin: ContinuousClock.Instant, end: Double, clock: ContinuousClock) async {
        var plan = UserPlan(index: u, scenario: scenario, corpus: corpus)
        // Users start one after another over the ramp, their phases spread evenly over a period.
        let fraction = Double(u) / Double(scenario.users)
        let start = scenario.rampUpSeconds * fraction + scenario.period * fraction
        await withTaskGroup(of: Void.self) { inflight in
            var k = 0
            while true {
                let dueSeconds = start + Double(k) * scenario.period
                if dueSeconds >= end { break }
                let due = origin + .seconds(dueSeconds)
                try? await clock.sleep(until: due)
                let request = plan.next(k)
                recorder.offered(at: dueSeconds)
                inflight.addTask {
                    let sent = clock.now
                    let (outcome, retryAfter) = await send(request, client: client, recorder: recorder)
                    let done = clock.now
                    recorder.record(
                        route: request.route, tier: request.tier, outcome: outcome, retryAfter: retryAfter, due: dueSeconds, lag: sent - due,
                        latency: done - due)
                }
                k += 1
            }
        }
    }

    /// The outcome, and whether the answer carried a Retry-After header.
    private func send(_ planned: PlannedRequest, client: HTTPClient, recorder: Recorder) async -> (Outcome, Bool) {
        var request = HTTPClientRequest(url: scenario.baseURL + planned.path)
        request.method = planned.method
        request.headers.add(name: "X-User-Id", value: planned.user)
        request.headers.add(name: "X-User-Tier", value: planned.tier)
        if let token = scenario.serviceToken { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let key = planned.idempotencyKey { request.headers.add(name: "Idempotency-Key", value: key) }
        if let body = planned.body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        var attempt = 0
        // An entry write is recorded with its answer (or its lack of one) for the write audit.
        let write = planned.route == .entryWrite ? ledger.map { ($0, $0.now()) } : nil
        while true {
            attempt += 1
            do {
                let response = try await client.execute(request, timeout: .milliseconds(Int64(scenario.requestTimeoutSeconds * 1000)))
                let body = try await response.body.collect(upTo: 8 << 20)
                if let (ledger, sent) = write {
                    ledger.record(
                        WriteRecord(
                            user: planned.user, key: planned.idempotencyKey ?? "", entryID: Self.entryID(in: body), status: Int(response.status.code),
                            instance: response.headers.first(name: "Soma-Instance"), sentMicros: sent, answeredMicros: ledger.now()))
                }
                return (Outcome(status: Int(response.status.code)), response.headers.first(name: "Retry-After") != nil)
            } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
                if let (ledger, sent) = write { ledger.record(WriteRecord(user: planned.user, key: planned.idempotencyKey ?? "", sentMicros: sent)) }
                return (.timeout, false)
            } catch {
                // A keep-alive connection the server closed while this request was on its way (nginx
                // closes its idle connections on every reload; so does any server at its keep-alive
                // timeout): no response byte came, and the request is safe to send again. Clients
                // retry this once (Go's net/http does for idempotent requests and for any request with
                // an Idempotency-Key), so the harness does too, and counts it (docs/PERFORMANCE.md, "Load").
                if attempt == 1, planned.safeToRetry, Self.closedBeforeResponse(error) {
                    recorder.retriedAfterClose()
                    continue
                }
                if let (ledger, sent) = write { ledger.record(WriteRecord(user: planned.user, key: planned.idempotencyKey ?? "", sentMicros: sent)) }
                return (.connection, false)
            }
        }
    }

    /// `entry.id` of an entry write's answer.
    static func entryID(in body: ByteBuffer) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
            let entry = object["entry"] as? [String: Any]
        else { return nil }
        return entry["id"] as? String
    }

    /// Whether `error` says the connection closed before any response arrived.
    static func closedBeforeResponse(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError { return error == .remoteConnectionClosed }
        if let error = error as? ChannelError { return error == .ioOnClosedChannel || error == .eof || error == .outputClosed }
        if let error = error as? IOError { return error.errnoCode == ECONNRESET || error.errnoCode == EPIPE }
        return false
    }
}

/// The highest resident memory seen per instance.
final class PeakResident: Sendable {
    private let state = Mutex<[String: Double]>([:])
    func update(_ sample: ServerSample) {
        state.withLock { peaks in
            for (instance, bytes) in sample.residentBytes { peaks[instance] = max(peaks[instance] ?? 0, bytes) }
        }
    }
    var values: [String: Double] { state.withLock { $0 } }
}

/// This process's CPU time (user + system), seconds.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}
