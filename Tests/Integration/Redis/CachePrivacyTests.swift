import Foundation
import NIOHTTP1
import Soma
import Testing

/// The shared cache as a side channel and erasure through every copy, over two `soma serve`
/// instances sharing a real Redis and a real PostgreSQL (docs/ARCHITECTURE.md §5):
/// what one user sees never depends on what another sent, no Redis key holds a user id, and
/// erasing a user on one instance empties L2 and the other instance's L1 of what they touched.
@Suite("Redis: cache privacy and erasure", .requiresRedis, .requiresPostgres, .serialized, .timeLimit(.minutes(3)))
struct CachePrivacyTests {
    static func l1Hits(_ instance: SomaProcess) async throws -> Double {
        try await instance.metric(#"soma_cache_requests_total{layer="l1",result="hit"}"#) ?? 0
    }

    static func l2Hits(_ instance: SomaProcess) async throws -> Double {
        try await instance.metric(#"soma_cache_requests_total{layer="l2",result="hit"}"#) ?? 0
    }

    @Test func anotherUsersTextLeavesNoTraceAndErasureReachesEveryInstance() async throws {
        let redis = try await RedisHarness.start()
        let postgres = try await PostgresHarness.shared()
        let env = ["REDIS_URL": redis.url, "DATABASE_URL": postgres.url, "SOMA_TIER_STANDARD_RPM": "100000"]
        async let startA = SomaProcess.start(instance: "privacy-a", environment: env)
        async let startB = SomaProcess.start(instance: "privacy-b", environment: env)
        let (a, b) = try await (startA, startB)
        let suffix = UUID().uuidString.prefix(8)
        let (ada, bo, cy) = ("ada-\(suffix)", "bo-\(suffix)", "cy-\(suffix)")
        let secret = "Ada's secret diary line \(suffix): I am leaving the company next month."

        // Ada writes an entry on A; Bo sends the same text on B: served from L2 (A filled it),
        // reported as a miss with the total time only.
        let written = try await a.request("POST", "/v1/entries", json: #"{"text": "\#(secret)"}"#, headers: [("X-User-Id", ada)])
        #expect(written.status == .created)
        let l2Before = try await Self.l2Hits(b)
        let seenByBo = try await b.analyze(secret, user: bo)
        #expect(try await Self.l2Hits(b) == l2Before + 5, "Bo is served from the shared cache")
        #expect(seenByBo.json["cached"] as? Bool == false)
        #expect((seenByBo.json["cache"] as? [String: String])?.values.allSatisfy { $0 == "miss" } == true)
        #expect((seenByBo.json["timings_ms"] as? [String: Any]).map { Array($0.keys) } == ["total"])
        // Ada's own repeat, on the other instance, is her own history (known through Redis).
        let seenByAda = try await b.analyze(secret, user: ada)
        #expect(seenByAda.json["cached"] as? Bool == true)

        // No Redis key names a user.
        let client = try RedisClient(url: redis.url, poolSize: 1, connectTimeout: .seconds(2), commandTimeout: .seconds(2))
        defer { client.close() }
        let keys = (try await client.command(["KEYS", "*"]).array ?? []).compactMap(\.string)
        #expect(keys.contains { $0.hasPrefix("soma:v1:ux:") }, "the per-user index is in Redis: \(keys)")
        for user in [ada, bo, cy] { #expect(!keys.contains { $0.contains(user) }, "a Redis key holds \(user)") }

        // Ada erases herself through B. Her texts leave L2 at once (with her index) ...
        let erased = try await b.request("DELETE", "/v1/user", headers: [("X-User-Id", ada)])
        #expect(erased.status == .ok)
        let counts = erased.json["erased"] as? [String: Any] ?? [:]
        #expect(counts["entries"] as? Int == 1)
        #expect((counts["cache_entries"] as? Int ?? 0) >= 5, "\(counts)")
        let left = (try await client.command(["KEYS", "soma:v1:*"]).array ?? []).compactMap(\.string)
        #expect(!left.contains(CacheKey.userIndex(of: UserTag(ada))), "her index outlived her")
        #expect(left.filter { $0.hasPrefix("soma:v1:a:") }.isEmpty, "analysis entries of her text are still in L2: \(left)")
        // ... and A's L1 purges them from the erasure log within a few seconds: Cy's request on
        // A must then be computed, neither an L1 nor an L2 hit.
        var purged = false
        for _ in 0..<50 where !purged {
            try await Task.sleep(for: .milliseconds(200))
            let (l1, l2) = (try await Self.l1Hits(a), try await Self.l2Hits(a))
            let probe = try await a.request("POST", "/v1/emotion", json: #"{"text": "\#(secret)"}"#, headers: [("X-User-Id", cy)])
            #expect(probe.status == .ok)
            let (l1After, l2After) = (try await Self.l1Hits(a), try await Self.l2Hits(a))
            purged = l1After == l1 && l2After == l2
        }
        #expect(purged, "instance A still served the erased user's text from its cache")
        // Texts never reach the logs (info level, as deployed).
        for instance in [a, b] { #expect(!instance.logText.contains("secret diary"), "a text was logged") }
        #expect(await a.stop() == 0)
        #expect(await b.stop() == 0)
        await redis.shutdown()
    }
}
