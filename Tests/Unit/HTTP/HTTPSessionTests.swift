import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Soma
import SomaHTTP
import Testing

/// Admission, priority, shedding, limits and the degradation chain, seen through HTTP.
@Suite("HTTP sessions and limits", .timeLimit(.minutes(2)))
struct HTTPSessionTests {
    /// One worker held by a "holder" request; the others queue behind it. These tests are about
    /// order and shedding, not deadlines: a queued request keeps a deadline far past the test's
    /// time limit, so a slow, shared machine cannot degrade it to a partial answer (the default
    /// 1 s did, once, in CI: the first free request timed out in the queue and skipped emotion).
    private func heldServer(_ gate: Gate, _ tweak: @escaping (inout TestConfiguration) -> Void = { _ in }) async throws -> SomaServer {
        try await TestServer.make(
            { c in
                c.admission.workers = 1
                c.defaultDeadline = .seconds(600)
                tweak(&c)
            },
            beforeModule: { user, module in
                guard module == .emotion else { return }
                gate.arrive(user)
                if user == "holder" { await gate.wait() }
            })
    }

    @Test func queuedRequestsRunPremiumFirstThenFIFO() async throws {
        let gate = Gate()
        let server = try await heldServer(gate)
        let sessions = server.service.sessions
        try await withRouter(server) { client in
            try await withThrowingTaskGroup(of: (String, Int).self) { group in
                group.addTask { ("holder", Int(try await client.post("/v1/analyze", #"{"text": "held"}"#, headers: user("holder")).status.code)) }
                try await eventually { sessions.runningCount == 1 }
                let arrivals: [(String, String, String)] = [
                    ("free-1", "free", "a"), ("standard-1", "standard", "b"), ("free-2", "free", "c"), ("premium-1", "premium", "d"),
                ]
                for (n, (id, tier, text)) in arrivals.enumerated() {
                    group.addTask { (id, Int(try await client.post("/v1/analyze", #"{"text": "\#(text)"}"#, headers: user(id, tier: tier)).status.code)) }
                    try await eventually { sessions.queuedCount == n + 1 }
                }
                gate.open()
                var statuses: [String: Int] = [:]
                for try await (id, status) in group { statuses[id] = status }
                #expect(statuses.values.allSatisfy { $0 == 200 })
            }
            #expect(gate.arrivals == ["holder", "premium-1", "standard-1", "free-1", "free-2"])
        }
    }

    @Test func lowestTierIsShedFirstWhenTheQueueIsFull() async throws {
        let gate = Gate()
        let server = try await heldServer(gate) { $0.admission.maxQueued = 1 }
        let sessions = server.service.sessions
        try await withRouter(server) { client in
            try await withThrowingTaskGroup(of: (String, TestResponse).self) { group in
                group.addTask { ("holder", try await client.post("/v1/analyze", #"{"text": "held"}"#, headers: user("holder"))) }
                try await eventually { sessions.runningCount == 1 }
                group.addTask { ("free", try await client.post("/v1/analyze", #"{"text": "f"}"#, headers: user("free", tier: "free"))) }
                try await eventually { sessions.queuedCount(tier: .free) == 1 }
                group.addTask { ("premium", try await client.post("/v1/analyze", #"{"text": "p"}"#, headers: user("premium", tier: "premium"))) }
                try await eventually { sessions.queuedCount(tier: .premium) == 1 }
                // The queue is full of premium now: another free request is refused at once.
                let refused = try await client.post("/v1/analyze", #"{"text": "f2"}"#, headers: user("free-2", tier: "free"))
                #expect(refused.status == .serviceUnavailable)
                #expect(refused.errorCode == "overloaded")
                #expect(Int(refused.headers[.retryAfter] ?? "") ?? 0 >= 1)
                gate.open()
                var responses: [String: TestResponse] = [:]
                for try await (id, response) in group { responses[id] = response }
                #expect(responses["free"]?.status == .serviceUnavailable)
                #expect(responses["free"]?.errorCode == "overloaded")
                #expect(responses["free"]?.headers[.retryAfter] != nil)
                #expect(responses["premium"]?.status == .ok)
                #expect(responses["holder"]?.status == .ok)
            }
            let metrics = try await client.get("/metrics").text
            #expect(metrics.contains(#"soma_shed_total{tier="free"} 2"#))
        }
    }

    @Test func perUserConcurrencyIsCappedByTier() async throws {
        let gate = Gate()
        let server = try await TestServer.make(
            { $0.admission.workers = 4 },
            beforeModule: { user, module in
                if module == .emotion, user == "busy" { await gate.wait() }
            })
        let sessions = server.service.sessions
        try await withRouter(server) { client in
            try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for i in 0..<2 {
                    group.addTask { try await client.post("/v1/analyze", #"{"text": "busy \#(i)"}"#, headers: user("busy", tier: "free")).status }
                }
                try await eventually { sessions.inFlight(user: "busy") == 2 }
                let third = try await client.post("/v1/analyze", #"{"text": "busy 3"}"#, headers: user("busy", tier: "free"))
                #expect(third.status == .tooManyRequests)
                #expect(third.errorCode == "rate_limited")
                #expect(third.headers[.retryAfter] != nil)
                let other = try await client.post("/v1/analyze", #"{"text": "someone else"}"#, headers: user("calm", tier: "free"))
                #expect(other.status == .ok)
                gate.open()
                for try await status in group { #expect(status == .ok) }
            }
        }
    }

    @Test func rateLimitRefusesTheRequestPastTheWindowBudget() async throws {
        let server = try await TestServer.make { $0.tiers[.standard].requestsPerWindow = 5 }
        try await withRouter(server) { client in
            for i in 0..<3 {
                let ok = try await client.post("/v1/emotion", #"{"text": "fine \#(i)"}"#, headers: user("r"))
                #expect(ok.status == .ok)
                #expect(ok.headers[.rlRemaining] == String(4 - i))
            }
            // A batch counts as its items: 3 more do not fit in the 2 left.
            let batch = try await client.post("/v1/analyze/batch", #"{"items": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}"#, headers: user("r"))
            #expect(batch.status == .tooManyRequests)
            let two = try await client.post("/v1/analyze/batch", #"{"items": [{"text": "a"}, {"text": "b"}]}"#, headers: user("r"))
            #expect(two.status == .ok)
            #expect(two.headers[.rlRemaining] == "0")
            let refused = try await client.post("/v1/emotion", #"{"text": "one too many"}"#, headers: user("r"))
            #expect(refused.status == .tooManyRequests)
            #expect(refused.errorCode == "rate_limited")
            let retry = try #require(Int(refused.headers[.retryAfter] ?? ""))
            #expect((1...60).contains(retry))
            #expect(refused.headers[.rlRemaining] == "0")
            #expect(refused.headers[.rlLimit] == "5")
            // Another user has their own budget; the premium tier keeps its default.
            #expect(try await client.post("/v1/emotion", #"{"text": "mine"}"#, headers: user("other")).status == .ok)
            let metrics = try await client.get("/metrics").text
            #expect(metrics.contains(#"soma_rate_limited_total{tier="standard"} 2"#))
        }
    }

    @Test func aDeadlinePassedWhileRunningDegradesToWhatWasComputed() async throws {
        let server = try await TestServer.make(beforeModule: { _, module in
            if module == .reasoning { try? await Task.sleep(for: .milliseconds(150)) }
        })
        try await withRouter(server) { client in
            var headers = user("slow")
            headers[.xDeadline] = "50"
            let response = try await client.post("/v1/analyze", #"{"text": "\#(sampleText)"}"#, headers: headers)
            #expect(response.status == .ok)
            #expect(response.json["degraded"] as? Bool == true)
            #expect(response.json["degraded_reason"] as? String == "deadline")
            #expect(response.results["emotion"] != nil)
            #expect(response.results["values"] == nil)
            #expect(response.json["cached"] as? Bool == false)
            let metrics = try await client.get("/metrics").text
            #expect(metrics.contains(#"soma_degraded_total{reason="deadline"} 1"#))
        }
    }

    @Test func aDeadlinePassedWhileWaitingGetsTheBasicResponse() async throws {
        // Hold the worker and let a 100 ms request expire in the queue; a cached module stays in
        // the degraded answer, the rest falls back to emotion.
        let gate = Gate()
        let server = try await heldServer(gate)
        let sessions = server.service.sessions
        try await withRouter(server) { client in
            // The waiter's own earlier request: only their own hits are reported as hits.
            _ = try await client.post("/v1/values", #"{"text": "\#(sampleText)"}"#, headers: user("waiter"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await client.post("/v1/analyze", #"{"text": "held"}"#, headers: user("holder")) }
                try await eventually { sessions.runningCount == 1 }
                var headers = user("waiter")
                headers[.xDeadline] = "100"
                let response = try await client.post("/v1/analyze", #"{"text": "\#(sampleText)", "modules": ["values", "narrative"]}"#, headers: headers)
                #expect(response.status == .ok)
                #expect(response.json["degraded"] as? Bool == true)
                #expect(response.json["degraded_reason"] as? String == "deadline")
                #expect(Set(response.results.keys) == ["values", "emotion"])
                let cache = response.json["cache"] as? [String: String] ?? [:]
                #expect(cache["values"] == "l1")
                #expect(cache["narrative"] == "miss")
                #expect(!gate.arrivals.contains("waiter"))
                gate.open()
                try await group.waitForAll()
            }
        }
    }

    @Test func entriesAreNeverStoredWithAPartialAnalysis() async throws {
        let server = try await TestServer.make(beforeModule: { _, module in
            if module == .values { try? await Task.sleep(for: .milliseconds(150)) }
        })
        try await withRouter(server) { client in
            var headers = user("w")
            headers[.xDeadline] = "50"
            let response = try await client.post("/v1/entries", #"{"text": "Something to keep."}"#, headers: headers)
            // Its own deadline passed: 504, as on the analysis routes (not 503, nothing was shed).
            #expect(response.status == .gatewayTimeout)
            #expect(response.errorCode == "deadline_exceeded")
            let list = try await client.get("/v1/entries", headers: user("w"))
            #expect((list.json["entries"] as? [Any])?.isEmpty == true)
        }
    }
}
