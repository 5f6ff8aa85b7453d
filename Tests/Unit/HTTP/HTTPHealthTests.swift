import Foundation
import HTTPTypes
import HummingbirdTesting
import Soma
import SomaHTTP
import Testing

/// `/health` reports the real state of the outbox and the store, not a literal "up".
@Suite(.timeLimit(.minutes(1))) struct HTTPHealthTests {
    /// A PostgreSQL-configured instance whose database never answers (a closed loopback port), so
    /// writes fail over to the outbox.
    private func unreachableDatabase() async throws -> SomaServer {
        try await TestServer.make {
            $0.databaseURL = "postgresql://soma@127.0.0.1:1/soma"
            $0.databaseTimeout = .milliseconds(200)
        }
    }

    private func dependency(_ response: TestResponse, _ name: String) -> [String: Any] {
        (response.json["dependencies"] as? [String: Any])?[name] as? [String: Any] ?? [:]
    }

    @Test func outboxServesWhileTheDatabaseIsDownThenShowsWhenItCannotWrite() async throws {
        let server = try await unreachableDatabase()
        let outboxPath = server.runtime.configuration.stateDirectory.appendingPathComponent("outbox.sqlite").path
        try await withRouter(server) { client in
            let written = try await client.post("/v1/entries", #"{"text":"Written while the database is away."}"#, headers: user("ada"))
            #expect(written.status == .accepted)

            var health = try await client.get("/health")
            #expect(health.json["status"] as? String == "degraded")
            #expect(dependency(health, "store")["kind"] as? String == "postgres")
            #expect(dependency(health, "store")["state"] as? String == "fallback")
            #expect(dependency(health, "outbox")["state"] as? String == "up")
            #expect(dependency(health, "outbox")["pending"] as? Int == 1)
            #expect(dependency(health, "outbox")["oldest_pending_seconds"] is Double || dependency(health, "outbox")["oldest_pending_seconds"] is Int)

            // The outbox file is taken away under the running instance (a volume lost, a
            // cleanup gone wrong): a write would go to a file no restart reads. As root, file
            // modes do not stop writes, so the test removes the file rather than chmod-ing it.
            try FileManager.default.removeItem(atPath: outboxPath)
            health = try await client.get("/health")
            #expect(dependency(health, "outbox")["state"] as? String == "down")
            #expect((dependency(health, "outbox")["detail"] as? String)?.contains("removed or replaced") == true)
            #expect(dependency(health, "store")["state"] as? String == "down", "no fallback is left for the store")

            let metrics = try await client.get("/metrics")
            #expect(metrics.text.contains("soma_instance_status 1"))
        }
    }

    @Test func aClosedOutboxIsDown() async throws {
        let server = try await unreachableDatabase()
        try await withRouter(server) { client in
            server.runtime.storage.outbox?.close()
            let health = try await client.get("/health")
            #expect(dependency(health, "outbox")["state"] as? String == "down")
        }
    }

    @Test func embeddedStoreReportsItsKindAndNoOutbox() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let health = try await client.get("/health")
            #expect(health.json["status"] as? String == "ok")
            #expect(dependency(health, "store")["kind"] as? String == "sqlite")
            #expect(dependency(health, "store")["state"] as? String == "up")
            #expect((health.json["dependencies"] as? [String: Any])?["outbox"] == nil)
        }
    }

    @Test func withRedisEveryCacheLayerIsReported() async throws {
        // Redis on a closed loopback port: the instance starts on its fallbacks.
        let server = try await TestServer.make { $0.redisURL = "redis://127.0.0.1:1" }
        try await withRouter(server) { client in
            let health = try await client.get("/health")
            #expect(dependency(health, "cache")["kind"] as? String == "memory")
            #expect(dependency(health, "redis")["kind"] as? String == "redis")
            #expect(dependency(health, "fallback_cache")["kind"] as? String == "sqlite")
            #expect(dependency(health, "fallback_cache")["state"] as? String == "up")
        }
    }
}
