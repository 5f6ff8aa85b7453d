import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
import Soma
import SomaHTTP
import Synchronization

/// A test instance's settings: the runtime's and the HTTP layer's, each field reachable by its
/// own name (`$0.serviceToken`, `$0.tiers`).
@dynamicMemberLookup
struct TestConfiguration {
    var runtime: RuntimeConfiguration
    var http: HTTPConfiguration

    subscript<T>(dynamicMember path: WritableKeyPath<RuntimeConfiguration, T>) -> T {
        get { runtime[keyPath: path] }
        set { runtime[keyPath: path] = newValue }
    }

    subscript<T>(dynamicMember path: WritableKeyPath<HTTPConfiguration, T>) -> T {
        get { http[keyPath: path] }
        set { http[keyPath: path] = newValue }
    }
}

/// Builds test instances of the service over the fixture models, each in its own temporary state
/// directory (removed by `cleanup()`).
enum TestServer {
    static let catalog: ModelCatalog = {
        do { return try ModelCatalog(models: Fixtures.modelSet) } catch { fatalError("catalog: \(error)") }
    }()

    static func make(
        _ tweak: (inout TestConfiguration) -> Void = { _ in },
        beforeModule: (@Sendable (String, Module) async -> Void)? = nil
    ) async throws -> SomaServer {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("soma-http-\(UUID().uuidString)", isDirectory: true)
        var configuration = TestConfiguration(runtime: RuntimeConfiguration(stateDirectory: dir, modelDirectory: Fixtures.models), http: HTTPConfiguration())
        configuration.http.port = 0
        configuration.http.drainDelay = .zero
        tweak(&configuration)
        configuration.runtime.admission.policy = configuration.runtime.tiers
        let prometheus = PrometheusCollectorRegistry()
        let runtime = try await SomaRuntime.make(
            configuration: configuration.runtime, metrics: SomaServer.metrics(prometheus), catalog: catalog, beforeModule: beforeModule)
        let server = SomaServer.make(runtime: runtime, configuration: configuration.http, prometheus: prometheus)
        server.readiness.set(.ready)
        return server
    }

    static func cleanup(_ server: SomaServer) {
        try? FileManager.default.removeItem(at: server.runtime.configuration.stateDirectory)
    }
}

extension SomaServer {
    /// The analysis serving path of the instance's runtime.
    var service: AnalysisService { runtime.service }
}

/// Runs `body` against an in-process router (no socket) and cleans up.
func withRouter<R: Sendable>(
    _ server: SomaServer,
    _ body: @Sendable (any TestClientProtocol) async throws -> R
) async throws -> R {
    defer { TestServer.cleanup(server) }
    return try await server.application.test(.router) { client in try await body(client) }
}

extension TestClientProtocol {
    func post(_ uri: String, _ json: String, headers: HTTPFields = [:], contentType: String? = "application/json") async throws -> TestResponse {
        var fields = headers
        if let contentType { fields[.contentType] = contentType }
        return try await execute(uri: uri, method: .post, headers: fields, body: ByteBuffer(string: json))
    }

    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .get, headers: headers)
    }

    func delete(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .delete, headers: headers)
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    /// The body as a JSON object (empty when it is not one).
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorField: String? { (json["error"] as? [String: Any])?["field"] as? String }
    var results: [String: Any] { json["results"] as? [String: Any] ?? [:] }
}

extension HTTPField.Name {
    static let xUserID = Self("X-User-Id")!
    static let xUserTier = Self("X-User-Tier")!
    static let xRequestID = Self("X-Request-Id")!
    static let xDeadline = Self("X-Request-Deadline-Ms")!
    static let idempotency = Self("Idempotency-Key")!
    static let rlLimit = Self("RateLimit-Limit")!
    static let rlRemaining = Self("RateLimit-Remaining")!
    static let rlReset = Self("RateLimit-Reset")!
}

func user(_ id: String, tier: String? = nil, token: String? = nil) -> HTTPFields {
    var fields: HTTPFields = [.xUserID: id]
    if let tier { fields[.xUserTier] = tier }
    if let token { fields[.authorization] = "Bearer \(token)" }
    return fields
}

/// A latch tests hold analyses at: `wait()` suspends until `open()`; it records who arrived.
final class Gate: Sendable {
    private struct State {
        var open = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var arrivals: [String] = []
    }

    private let state = Mutex(State())

    func arrive(_ who: String) {
        state.withLock { $0.arrivals.append(who) }
    }

    var arrivals: [String] { state.withLock { $0.arrivals } }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resume = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiters.append(c)
                return false
            }
            if resume { c.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.open = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }
}

/// Polls `condition` every few milliseconds until it holds (at most `limit`); for waiting on state
/// another task changes, never for asserting speed.
func eventually(_ limit: Duration = .seconds(10), _ condition: () async -> Bool) async throws {
    let clock = ContinuousClock()
    let end = clock.now + limit
    while !(await condition()) {
        guard clock.now < end else { throw EventuallyTimeout() }
        try await Task.sleep(for: .milliseconds(5))
    }
}

struct EventuallyTimeout: Error {}

let sampleText = "I was so happy because my sister finally came home, but I worry she will leave again."
