import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Soma
import SomaHTTP
import Testing

@Suite("HTTP routes", .timeLimit(.minutes(2)))
struct HTTPRoutesTests {
    @Test func analyzeAnswersAllFiveModulesThenFromCache() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let first = try await client.post("/v1/analyze", #"{"text": "\#(sampleText)"}"#)
            #expect(first.status == .ok)
            #expect(Set(first.results.keys) == ["emotion", "reasoning", "values", "theory_of_mind", "narrative"])
            #expect(first.json["cached"] as? Bool == false)
            #expect(first.json["degraded"] as? Bool == false)
            #expect(first.json["user_id"] as? String == "anonymous")
            #expect((first.json["model_version"] as? String)?.hasPrefix("soma-") == true)
            #expect(first.headers[.xRequestID]?.count == 32)
            #expect(first.json["request_id"] as? String == first.headers[.xRequestID])
            #expect(first.headers[.rlLimit] == "100")
            #expect(first.headers[.contentType]?.hasPrefix("application/json") == true)

            let second = try await client.post("/v1/analyze", #"{"text": "\#(sampleText)"}"#)
            #expect(second.json["cached"] as? Bool == true)
            #expect((second.json["cache"] as? [String: String])?.values.allSatisfy { $0 == "l1" } == true)
            #expect((second.json["timings_ms"] as? [String: Any])?["total"] != nil, "a cached answer has its total time too")
            // The shared scope shows the total only: which modules ran depends on other users.
            #expect((first.json["timings_ms"] as? [String: Any]).map { Array($0.keys) } == ["total"])
            #expect((second.results["emotion"] as? NSDictionary) == (first.results["emotion"] as? NSDictionary))
            #expect(second.results["emotion"] != nil)
        }
    }

    @Test func requestIDIsHonouredAndInsaneOnesReplaced() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let given = try await client.get("/health", headers: [.xRequestID: "trace-abc-123"])
            #expect(given.headers[.xRequestID] == "trace-abc-123")
            let bad = try await client.get("/health", headers: [.xRequestID: String(repeating: "x", count: 300)])
            #expect(bad.headers[.xRequestID]?.count == 32)
        }
    }

    @Test(arguments: [
        ("emotion", "emotion"), ("reasoning", "reasoning"), ("values", "values"), ("theory-of-mind", "theory_of_mind"), ("narrative", "narrative"),
    ])
    func singleModuleRoutes(path: String, key: String) async throws {
        try await withRouter(try await TestServer.make()) { client in
            let response = try await client.post("/v1/\(path)", #"{"text": "\#(sampleText)"}"#)
            #expect(response.status == .ok)
            #expect(Array(response.results.keys) == [key])
            #expect(Array((response.json["cache"] as? [String: String] ?? [:]).keys) == [key])
        }
    }

    @Test func modulesSubsetAndAliases() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let response = try await client.post("/v1/analyze", #"{"text": "We should go because it is late.", "modules": ["reasoning", "theory-of-mind"]}"#)
            #expect(response.status == .ok)
            #expect(Set(response.results.keys) == ["reasoning", "theory_of_mind"])
        }
    }

    @Test func batchAnswersInOrderWithItemErrors() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let body =
                #"{"items": [{"text": "I am glad."}, {"text": ""}, {"text": "It rained, so we stayed in.", "modules": ["reasoning"]}, {"text": "x", "modules": ["nope"]}], "modules": ["emotion"]}"#
            let response = try await client.post("/v1/analyze/batch", body)
            #expect(response.status == .ok)
            let items = try #require(response.json["items"] as? [[String: Any]])
            #expect(items.count == 4)
            #expect(Set((items[0]["results"] as? [String: Any] ?? [:]).keys) == ["emotion"])
            #expect((items[1]["error"] as? [String: Any])?["code"] as? String == "validation_failed")
            #expect((items[1]["error"] as? [String: Any])?["field"] as? String == "items[1].text")
            #expect(Set((items[2]["results"] as? [String: Any] ?? [:]).keys) == ["reasoning"])
            #expect((items[3]["error"] as? [String: Any])?["code"] as? String == "unknown_module")
            #expect(response.headers[.rlRemaining] == "96")
        }
    }

    @Test func batchBounds() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let empty = try await client.post("/v1/analyze/batch", #"{"items": []}"#)
            #expect(empty.status == .unprocessableContent)
            #expect(empty.errorField == "items")
            let items = Array(repeating: #"{"text": "ok"}"#, count: 9).joined(separator: ",")
            let tooMany = try await client.post("/v1/analyze/batch", #"{"items": [\#(items)]}"#, headers: user("f", tier: "free"))
            #expect(tooMany.status == .unprocessableContent)
            #expect(tooMany.errorCode == "validation_failed")
        }
    }

    @Test func badInputGetsTheContractsErrors() async throws {
        try await withRouter(try await TestServer.make { $0.maxBodyBytes = 2048 }) { client in
            let cases: [(body: String, contentType: String?, status: HTTPResponse.Status, code: String, field: String?)] = [
                ("{not json", "application/json", .badRequest, "invalid_json", nil),
                ("", "application/json", .badRequest, "invalid_json", nil),
                (#"{"text": "hi"}"#, "text/plain", .unsupportedMediaType, "unsupported_media_type", nil),
                (#"{"text": "hi"}"#, nil, .unsupportedMediaType, "unsupported_media_type", nil),
                (#"{"text": 3}"#, "application/json", .unprocessableContent, "validation_failed", "text"),
                (#"{}"#, "application/json", .unprocessableContent, "validation_failed", "text"),
                (#"{"text": null}"#, "application/json", .unprocessableContent, "validation_failed", "text"),
                (#"[1, 2]"#, "application/json", .unprocessableContent, "validation_failed", "$"),
                (#"{"text": "   "}"#, "application/json", .unprocessableContent, "validation_failed", "text"),
                (#"{"text": "hi", "modules": []}"#, "application/json", .unprocessableContent, "validation_failed", "modules"),
                (#"{"text": "hi", "modules": "emotion"}"#, "application/json", .unprocessableContent, "validation_failed", "modules"),
                (#"{"text": "hi", "modules": ["emotion", "astrology"]}"#, "application/json", .unprocessableContent, "unknown_module", "modules[1]"),
                (#"{"text": "\#(String(repeating: "a", count: 3000))"}"#, "application/json", .contentTooLarge, "payload_too_large", nil),
            ]
            for c in cases {
                let response = try await client.post("/v1/analyze", c.body, contentType: c.contentType)
                #expect(response.status == c.status, "\(c.body.prefix(40))")
                #expect(response.errorCode == c.code, "\(c.body.prefix(40))")
                #expect(response.errorField == c.field, "\(c.body.prefix(40))")
                let error = try #require(response.json["error"] as? [String: Any])
                #expect(error["request_id"] as? String == response.headers[.xRequestID])
                #expect((error["message"] as? String)?.isEmpty == false)
            }
        }
    }

    @Test func textCapsFollowTheTier() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let text = String(repeating: "word ", count: 4000)  // 20,000 bytes: over free (16 KB), under standard (32 KB)
            let free = try await client.post("/v1/analyze", #"{"text": "\#(text)", "modules": ["emotion"]}"#, headers: user("f", tier: "free"))
            #expect(free.status == .contentTooLarge)
            #expect(free.errorField == "text")
            let standard = try await client.post("/v1/analyze", #"{"text": "\#(text)", "modules": ["emotion"]}"#, headers: user("s", tier: "standard"))
            #expect(standard.status == .ok)
        }
    }

    @Test func unknownRouteAndBadHeaders() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let missing = try await client.get("/v2/nothing")
            #expect(missing.status == .notFound)
            #expect(missing.errorCode == "not_found")
            let tier = try await client.post("/v1/analyze", #"{"text": "hi"}"#, headers: user("u", tier: "gold"))
            #expect(tier.status == .badRequest)
            #expect(tier.errorCode == "invalid_request")
            let deadline = try await client.post("/v1/analyze", #"{"text": "hi"}"#, headers: [.xDeadline: "soon"])
            #expect(deadline.status == .badRequest)
            #expect(deadline.errorField == "X-Request-Deadline-Ms")
            let limit = try await client.get("/v1/entries?limit=500")
            #expect(limit.status == .badRequest)
            #expect(limit.errorField == "limit")
        }
    }

    @Test func authOnRequiresTokenAndIdentity() async throws {
        let server = try await TestServer.make { $0.serviceToken = "s3cret-token" }
        try await withRouter(server) { client in
            let none = try await client.post("/v1/analyze", #"{"text": "hi"}"#)
            #expect(none.status == .unauthorized)
            #expect(none.errorCode == "unauthorized")
            let wrong = try await client.post("/v1/analyze", #"{"text": "hi"}"#, headers: user("u1", token: "s3cret-tokem"))
            #expect(wrong.status == .unauthorized)
            let prefix = try await client.post("/v1/analyze", #"{"text": "hi"}"#, headers: user("u1", token: "s3cret"))
            #expect(prefix.status == .unauthorized)
            let noUser = try await client.post("/v1/analyze", #"{"text": "hi"}"#, headers: [.authorization: "Bearer s3cret-token"])
            #expect(noUser.status == .badRequest)
            #expect(noUser.errorCode == "invalid_request")
            let ok = try await client.post("/v1/analyze", #"{"text": "hi"}"#, headers: user("u1", tier: "premium", token: "s3cret-token"))
            #expect(ok.status == .ok)
            #expect(ok.json["user_id"] as? String == "u1")
            for path in ["/health", "/ready", "/metrics"] {
                #expect(try await client.get(path).status == .ok, "\(path)")
            }
            let entries = try await client.get("/v1/entries")
            #expect(entries.status == .unauthorized)
            let admin = try await client.get("/admin/models", headers: [.authorization: "Bearer s3cret-token"])
            #expect(admin.status == .forbidden)
        }
    }

    @Test func adminNeedsItsOwnToken() async throws {
        let server = try await TestServer.make {
            $0.adminToken = "adm1n"; $0.serviceToken = "svc"
        }
        try await withRouter(server) { client in
            let wrong = try await client.get("/admin/models", headers: [.authorization: "Bearer svc"])
            #expect(wrong.status == .unauthorized)
            let admin: HTTPFields = [.authorization: "Bearer adm1n"]
            let models = try await client.get("/admin/models", headers: admin)
            #expect(models.status == .ok)
            let list = try #require(models.json["models"] as? [[String: Any]])
            #expect(list.count == 5)
            #expect(list.allSatisfy { $0["loaded"] as? Bool == true })

            let unload = try await client.post("/admin/models/narrative/unload", "", headers: admin, contentType: nil)
            #expect(unload.status == .ok)
            #expect(unload.json["changed"] as? Bool == true)
            #expect((unload.json["model"] as? [String: Any])?["loaded"] as? Bool == false)
            // The next request that needs it loads it again, once.
            let analysed = try await client.post("/v1/narrative", #"{"text": "She walked home."}"#, headers: user("u", token: "svc"))
            #expect(analysed.status == .ok)
            let again = try await client.post("/admin/models/narrative/load", "", headers: admin, contentType: nil)
            #expect(again.json["changed"] as? Bool == false)
            #expect((again.json["model"] as? [String: Any])?["loads"] as? Int == 2)

            let unknown = try await client.post("/admin/models/astrology/load", "", headers: admin, contentType: nil)
            #expect(unknown.status == .unprocessableContent)
            #expect(unknown.errorCode == "unknown_module")

            let schema = try await client.post("/admin/init-schema", "", headers: admin, contentType: nil)
            #expect(schema.status == .ok)
            #expect(schema.json["schema"] as? String == "ok")

            let warm = try await client.post("/admin/cache/warm", #"{"texts": ["Warm me up.", "And me too.", " "]}"#, headers: admin)
            #expect(warm.status == .ok)
            #expect(warm.json["texts"] as? Int == 2)
            #expect(warm.json["skipped"] as? Int == 1)
            let hitsBefore = try await l1Hits(client)
            let hit = try await client.post("/v1/analyze", #"{"text": "Warm me up."}"#, headers: user("u", token: "svc"))
            #expect(try await l1Hits(client) == hitsBefore + 5, "served from the warmed cache")
            #expect(hit.json["cached"] as? Bool == false, "but warmed by the operator, not by this user: no hit is reported")
        }
    }

    @Test func noAdminTokenMeansForbidden() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let response = try await client.get("/admin/models", headers: [.authorization: "Bearer anything"])
            #expect(response.status == .forbidden)
            #expect(response.errorCode == "forbidden")
        }
    }

    @Test func entriesLifecycleIdempotencyAndIsolation() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let alice = user("alice")
            let bob = user("bob")
            var keyed = alice
            keyed[.idempotency] = "write-1"
            let created = try await client.post("/v1/entries", #"{"text": "I value my family and my freedom."}"#, headers: keyed)
            #expect(created.status == .created)
            #expect(created.json["persisted"] as? String == "stored")
            let entry = try #require(created.json["entry"] as? [String: Any])
            let id = try #require(entry["id"] as? String)
            #expect(Set((entry["results"] as? [String: Any] ?? [:]).keys).count == 5)

            let replay = try await client.post("/v1/entries", #"{"text": "I value my family and my freedom."}"#, headers: keyed)
            #expect(replay.status == .created)
            #expect((replay.json["entry"] as? [String: Any])?["id"] as? String == id)

            for i in 0..<4 {
                _ = try await client.post("/v1/entries", #"{"text": "Entry number \#(i) was a good day."}"#, headers: alice)
            }
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await client.get("/v1/entries?limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""), headers: alice)
                #expect(page.status == .ok)
                let entries = try #require(page.json["entries"] as? [[String: Any]])
                #expect(entries.count <= 2)
                seen += entries.compactMap { $0["id"] as? String }
                cursor = page.json["next_cursor"] as? String
            } while cursor != nil
            #expect(seen.count == 5)
            #expect(Set(seen).count == 5)
            #expect(seen.last == id)

            let badCursor = try await client.get("/v1/entries?cursor=garbage", headers: alice)
            #expect(badCursor.status == .badRequest)
            #expect(badCursor.errorField == "cursor")

            // Bob sees, deletes and profiles none of Alice's data.
            let bobList = try await client.get("/v1/entries", headers: bob)
            #expect((bobList.json["entries"] as? [Any])?.isEmpty == true)
            let bobDelete = try await client.delete("/v1/entries/\(id)", headers: bob)
            #expect(bobDelete.status == .notFound)
            let bobProfile = try await client.get("/v1/profile", headers: bob)
            #expect((bobProfile.json["profile"] as? [String: Any])?["entries"] as? Int == 0)

            let deleted = try await client.delete("/v1/entries/\(id)", headers: alice)
            #expect(deleted.status == .ok)
            #expect(deleted.json["deleted"] as? Bool == true)
            let gone = try await client.delete("/v1/entries/\(id)", headers: alice)
            #expect(gone.status == .notFound)
            #expect(gone.errorCode == "not_found")
        }
    }

    @Test func profileIsCachedAndInvalidatedOnWrite() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let carol = user("carol")
            _ = try await client.post("/v1/entries", #"{"text": "I love helping my friends and my family."}"#, headers: carol)
            let first = try await client.get("/v1/profile", headers: carol)
            #expect(first.status == .ok)
            #expect(first.json["cached"] as? Bool == false)
            #expect((first.json["profile"] as? [String: Any])?["entries"] as? Int == 1)
            let second = try await client.get("/v1/profile", headers: carol)
            #expect(second.json["cached"] as? Bool == true)
            #expect(second.json["updated_at"] as? String == first.json["updated_at"] as? String)

            _ = try await client.post("/v1/entries", #"{"text": "Success at work matters a lot to me."}"#, headers: carol)
            let third = try await client.get("/v1/profile", headers: carol)
            #expect(third.json["cached"] as? Bool == false)
            #expect((third.json["profile"] as? [String: Any])?["entries"] as? Int == 2)

            let erased = try await client.delete("/v1/user", headers: carol)
            #expect(erased.status == .ok)
            let counts = try #require(erased.json["erased"] as? [String: Any])
            #expect(counts["entries"] as? Int == 2)
            // The profile and the five analyses of each of her two texts.
            #expect(counts["cache_entries"] as? Int == 11)
            let after = try await client.get("/v1/profile", headers: carol)
            #expect((after.json["profile"] as? [String: Any])?["entries"] as? Int == 0)
        }
    }

    @Test func healthAndReadiness() async throws {
        let server = try await TestServer.make()
        try await withRouter(server) { client in
            let health = try await client.get("/health")
            #expect(health.status == .ok)
            #expect(health.json["status"] as? String == "ok")
            #expect(health.json["instance_id"] as? String == "soma-1")
            #expect(((health.json["dependencies"] as? [String: Any])?["store"] as? [String: Any])?["state"] as? String == "up")

            #expect(try await client.get("/ready").status == .ok)
            server.readiness.set(.starting)
            let starting = try await client.get("/ready")
            #expect(starting.status == .serviceUnavailable)
            #expect(starting.json["status"] as? String == "starting")
            server.readiness.set(.draining)
            let draining = try await client.get("/ready")
            #expect(draining.status == .serviceUnavailable)
            #expect(draining.json["status"] as? String == "draining")
            #expect(try await client.get("/health").json["draining"] as? Bool == true)
        }
    }

    @Test func metricsExposeTheSLOBuckets() async throws {
        try await withRouter(try await TestServer.make()) { client in
            _ = try await client.post("/v1/analyze", #"{"text": "\#(sampleText)"}"#, headers: user("m1"))
            _ = try await client.post("/v1/analyze", #"{"text": "\#(sampleText)"}"#, headers: user("m2"))
            let metrics = try await client.get("/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
            let text = metrics.text
            for le in ["0.0005", "0.001", "0.005", "0.2", "0.25", "5.0"] {
                #expect(
                    text.contains(#"soma_http_request_duration_seconds_bucket{route="/v1/analyze",method="POST",status="200",le="\#(le)"}"#), "bucket \(le)")
            }
            #expect(text.contains(#"soma_module_duration_seconds_bucket{module="emotion",le="0.2"}"#))
            #expect(text.contains(#"soma_cache_requests_total{layer="l1",result="hit"} 5"#))
            #expect(text.contains(#"soma_cache_requests_total{layer="l1",result="miss"} 5"#))
            #expect(text.contains("soma_active_users 2"))
            #expect(text.contains(#"soma_model_loaded{module="values",precision="fp32"} 1"#))
            #expect(text.contains("process_resident_memory_bytes "))
            #expect(text.contains("process_cpu_seconds_total "))
            #expect(text.contains("soma_instance_status 2"))
        }
    }
}

/// `soma_cache_requests_total{layer="l1",result="hit"}` of the server behind `client`.
func l1Hits(_ client: any TestClientProtocol) async throws -> Int {
    let text = String(decoding: try await client.get("/metrics").body.readableBytesView, as: UTF8.self)
    let sample = #"soma_cache_requests_total{layer="l1",result="hit"} "#
    return text.split(separator: "\n").first { $0.hasPrefix(sample) }.flatMap { Int(Double($0.dropFirst(sample.count)) ?? -1) } ?? 0
}

@Suite("HTTP cache scope", .timeLimit(.minutes(1)))
struct HTTPCacheScopeTests {
    @Test func sharedScopeSharesAcrossUsersUserScopeDoesNot() async throws {
        try await withRouter(try await TestServer.make()) { client in
            _ = try await client.post("/v1/emotion", #"{"text": "Shared text."}"#, headers: user("a"))
            let hitsBefore = try await l1Hits(client)
            let other = try await client.post("/v1/emotion", #"{"text": "Shared text."}"#, headers: user("b"))
            #expect(try await l1Hits(client) == hitsBefore + 1, "b is served from the shared cache")
            // ... but nothing in b's answer depends on a having sent the text.
            #expect(other.json["cached"] as? Bool == false)
            #expect(other.json["cache"] as? [String: String] == ["emotion": "miss"])
            #expect((other.json["timings_ms"] as? [String: Any]).map { Array($0.keys) } == ["total"])
            // b's own repeat is b's own history.
            let again = try await client.post("/v1/emotion", #"{"text": "Shared text."}"#, headers: user("b"))
            #expect(again.json["cached"] as? Bool == true)
        }
        try await withRouter(try await TestServer.make { $0.cacheScope = .user }) { client in
            _ = try await client.post("/v1/emotion", #"{"text": "Private text."}"#, headers: user("a"))
            let same = try await client.post("/v1/emotion", #"{"text": "Private text."}"#, headers: user("a"))
            #expect(same.json["cached"] as? Bool == true)
            let other = try await client.post("/v1/emotion", #"{"text": "Private text."}"#, headers: user("b"))
            #expect(other.json["cached"] as? Bool == false)
        }
    }
}

@Suite("HTTP erasure reaches the cache", .timeLimit(.minutes(1)))
struct HTTPCacheErasureTests {
    @Test func erasingAUserPurgesEveryCacheEntryTheyTouchedAndNothingElse() async throws {
        try await withRouter(try await TestServer.make()) { client in
            _ = try await client.post("/v1/entries", #"{"text": "Only Ada wrote this."}"#, headers: user("ada"))
            _ = try await client.post("/v1/analyze", #"{"text": "Ada sent this one too."}"#, headers: user("ada"))
            _ = try await client.post("/v1/analyze", #"{"text": "Bo alone sent this."}"#, headers: user("bo"))
            let erased = try await client.delete("/v1/user", headers: user("ada"))
            // Five analyses of each of her two texts (no profile was read).
            #expect((erased.json["erased"] as? [String: Any])?["cache_entries"] as? Int == 10)
            // Her texts are gone from the cache: the next request for each is computed again.
            for text in ["Only Ada wrote this.", "Ada sent this one too."] {
                let hitsBefore = try await l1Hits(client)
                _ = try await client.post("/v1/analyze", #"{"text": "\#(text)"}"#, headers: user("cy"))
                #expect(try await l1Hits(client) == hitsBefore, "\(text) was still cached after the erasure")
            }
            // Someone else's is not.
            let hitsBefore = try await l1Hits(client)
            _ = try await client.post("/v1/analyze", #"{"text": "Bo alone sent this."}"#, headers: user("cy"))
            #expect(try await l1Hits(client) == hitsBefore + 5)
        }
    }
}
