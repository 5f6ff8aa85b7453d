import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Soma
import SomaHTTP
import Testing

/// Graceful shutdown: not ready at once, in-flight requests finish, then the server stops.
@Suite("HTTP lifecycle", .timeLimit(.minutes(2)))
struct HTTPLifecycleTests {
    @Test func gracefulShutdownLetsTheInFlightRequestFinish() async throws {
        let gate = Gate()
        let server = try await TestServer.make(
            { $0.drainDelay = .milliseconds(500) },
            beforeModule: { user, module in
                if user == "slow", module == .emotion { await gate.wait() }
            })
        defer { TestServer.cleanup(server) }
        let group = ServiceGroup(configuration: .init(services: server.services.map { .init(service: $0) }, logger: Logger(label: "test")))
        let client = HTTPClient.shared

        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await eventually { server.readiness.port != nil }
            let base = "http://127.0.0.1:\(server.readiness.port!)"

            async let inFlight: HTTPClientResponse = {
                var request = HTTPClientRequest(url: base + "/v1/analyze")
                request.method = .POST
                request.headers.add(name: "content-type", value: "application/json")
                request.headers.add(name: "x-user-id", value: "slow")
                request.headers.add(name: "x-request-deadline-ms", value: "10000")
                request.body = .bytes(ByteBuffer(string: #"{"text": "\#(sampleText)"}"#))
                return try await client.execute(request, timeout: .seconds(30))
            }()
            try await eventually { server.service.sessions.runningCount == 1 }

            await group.triggerGracefulShutdown()
            try await eventually { server.readiness.current == .draining }
            let ready = try await client.execute(HTTPClientRequest(url: base + "/ready"), timeout: .seconds(5))
            #expect(ready.status == .serviceUnavailable)

            gate.open()
            let response = try await inFlight
            #expect(response.status == .ok)
            let body = try await response.body.collect(upTo: 1 << 20)
            let json = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
            #expect((json?["results"] as? [String: Any])?.count == 5)
            #expect(json?["degraded"] as? Bool == false)
            try await tasks.waitForAll()
        }
    }

    /// The real binary: SIGTERM while a request runs → that request completes, the process exits 0.
    @Test func sigtermDrainsAndExitsZero() async throws {
        let binary = try #require(Self.somaBinary(), "the soma executable is built next to the test bundle")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("soma-sigterm-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve", "--port", "0", "--state-dir", state.path, "--model-dir", Fixtures.models.path]
        var environment = ProcessInfo.processInfo.environment
        // 800 ms per module: a request takes about four seconds, long enough for the in-flight
        // gauge to be seen even on a loaded machine.
        environment["SOMA_SLOWDOWN"] = "800000"
        environment["SOMA_DRAIN_SECONDS"] = "0"
        environment["SOMA_LOG_LEVEL"] = "info"
        process.environment = environment
        let log = state.appendingPathExtension("log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        let port = try await Self.listeningPort(log, process)
        let client = HTTPClient.shared
        let base = "http://127.0.0.1:\(port)"
        async let inFlight: HTTPClientResponse = {
            var request = HTTPClientRequest(url: base + "/v1/analyze")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.headers.add(name: "x-request-deadline-ms", value: "10000")
            request.body = .bytes(ByteBuffer(string: #"{"text": "Shutting down politely."}"#))
            return try await client.execute(request, timeout: .seconds(30))
        }()
        // Wait until the server counts it in flight (the scrape itself is the other one).
        try await eventually {
            guard let metrics = try? await client.execute(HTTPClientRequest(url: base + "/metrics"), timeout: .seconds(5)),
                let text = try? await metrics.body.collect(upTo: 1 << 22)
            else { return false }
            return String(buffer: text).contains("soma_http_requests_in_flight 2")
        }
        kill(process.processIdentifier, SIGTERM)
        let response = try await inFlight
        #expect(response.status == .ok)
        let body = try await response.body.collect(upTo: 1 << 20)
        let json = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
        #expect((json?["results"] as? [String: Any])?.count == 5)
        try await eventually(.seconds(20)) { !process.isRunning }
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
    }

    static func somaBinary() -> URL? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("soma")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let fallback = Fixtures.root.appendingPathComponent(".build/debug/soma")
        return FileManager.default.isExecutableFile(atPath: fallback.path) ? fallback : nil
    }

    /// Reads the server's log until it says where it listens.
    static func listeningPort(_ log: URL, _ process: Process) async throws -> Int {
        var port: Int?
        try await eventually(.seconds(30)) {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: "listening on 127.0.0.1:") {
                port = Int(text[range.upperBound...].prefix { $0.isNumber })
            }
            return port != nil || !process.isRunning
        }
        return try #require(port, "the server exited before listening: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }
}
