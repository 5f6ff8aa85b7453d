// Over 500 lines on purpose: one conformance run over every operation and documented status, with
// the exercise of each configuration (auth on, auth off) and the checks they share.
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Soma
import SomaHTTP
import Testing

// Runs the service on a real socket and checks every response it gives against openapi.yaml: the
// status is documented for the operation, the body matches the documented schema, the documented
// headers are there, the Content-Type is the documented media type, and X-Request-Id is the body's
// `request_id`. Every violation of the run is collected and reported at once.

@Suite("OpenAPI conformance (live server)", .timeLimit(.minutes(2)))
struct OpenAPIConformanceTests {
    fileprivate static let serviceToken = "svc-conformance-token"
    fileprivate static let adminToken = "adm-conformance-token"

    /// What the run must produce, per operation (METHOD template): at least its success status
    /// and every error status the server can be driven to without faults injected into the store.
    /// 500, the analysis routes' 504 and every 503 but /ready's are not reachable this way.
    static let requiredCoverage: [String: [Int]] = {
        var required: [String: [Int]] = [:]
        for path in ["/v1/analyze", "/v1/analyze/batch", "/v1/emotion", "/v1/reasoning", "/v1/values", "/v1/theory-of-mind", "/v1/narrative"] {
            required["POST \(path)"] = [200, 400, 401, 413, 415, 422, 429]
        }
        required["POST /v1/entries"] = [201, 400, 401, 413, 415, 422, 429, 504]
        required["GET /v1/entries"] = [200, 400, 401, 429]
        required["DELETE /v1/entries/{id}"] = [200, 400, 401, 404, 429]
        required["DELETE /v1/user"] = [200, 400, 401, 429]
        required["GET /v1/profile"] = [200, 400, 401, 429]
        required["GET /health"] = [200]
        required["GET /ready"] = [200, 503]
        required["GET /metrics"] = [200]
        required["GET /admin/models"] = [200, 401, 403]
        required["POST /admin/models/{module}/load"] = [200, 401, 403, 422]
        required["POST /admin/models/{module}/unload"] = [200, 401, 403, 422]
        required["POST /admin/init-schema"] = [200, 401, 403]
        required["POST /admin/cache/warm"] = [200, 400, 401, 403, 413, 415, 422]
        return required
    }()

    @Test func everyResponseMatchesTheDocument() async throws {
        let doc = try OpenAPIDocument.load()
        var log = ConformanceLog(doc: doc, server: "setup")

        // The coverage list itself must name documented responses only.
        for (operation, statuses) in Self.requiredCoverage {
            let parts = operation.split(separator: " ", maxSplits: 1).map(String.init)
            for status in statuses where doc.response(method: parts[0], path: parts[1], status: status) == nil {
                log.violations.append("coverage list: \(operation) \(status) is not documented in openapi.yaml")
            }
        }

        // Auth on: a service token and an admin token, small limits to reach 413 and 429.
        let secured = try await TestServer.make(
            {
                $0.serviceToken = Self.serviceToken
                $0.adminToken = Self.adminToken
                $0.maxBodyBytes = 4096
                $0.tiers[.free].requestsPerWindow = 3
                $0.tiers[.free].maxTextBytes = 1024
                // This suite sends every kind of invalid request as a handful of users.
                $0.invalidRequestsPerMinute = 1_000_000
            },
            beforeModule: { user, module in
                // Users named slow-… take 150 ms on their first module after emotion: past a 50 ms
                // deadline, so the answer is degraded (and an entry is refused).
                if user.hasPrefix("slow"), module != .emotion { try? await Task.sleep(for: .milliseconds(150)) }
            })
        defer { TestServer.cleanup(secured) }
        let first = log
        log = try await secured.application.test(.live) { client in
            var log = first
            log.server = "auth on"
            try await Self.exerciseSecured(client, &log, server: secured)
            return log
        }

        // Auth off: no service token (anonymous users allowed), no admin token (admin is 403).
        let open = try await TestServer.make { $0.invalidRequestsPerMinute = 1_000_000 }
        defer { TestServer.cleanup(open) }
        let second = log
        log = try await open.application.test(.live) { client in
            var log = second
            log.server = "auth off"
            try await Self.exerciseOpen(client, &log)
            return log
        }

        // Coverage: every documented operation, and every required status, was seen.
        for operation in doc.operations {
            let key = "\(operation.method) \(operation.path)"
            let seen = log.exercised[key] ?? []
            if seen.isEmpty { log.violations.append("coverage: \(key) was never exercised") }
            for status in Self.requiredCoverage[key] ?? [] where !seen.contains(status) {
                log.violations.append("coverage: \(key) never answered \(status)")
            }
            let unseen = operation.statuses.filter { Int($0).map { !seen.contains($0) } ?? true }
            if !unseen.isEmpty { log.notes.append("documented but not produced: \(key) \(unseen.joined(separator: " "))") }
        }

        let exchanges = log.exercised.values.reduce(0) { $0 + $1.count }
        print("OpenAPI conformance: \(log.requests) requests, \(exchanges) operation × status pairs, \(log.violations.count) violations")
        for note in log.allNotes { print("  note: \(note)") }
        #expect(log.violations.isEmpty, "\(log.violations.count) violations of openapi.yaml:\n\(log.violations.joined(separator: "\n"))")
    }

    // MARK: - Auth on

    private static func exerciseSecured(_ client: any TestClientProtocol, _ log: inout ConformanceLog, server: SomaServer) async throws {
        let token = serviceToken
        let admin: HTTPFields = [.authorization: "Bearer \(adminToken)"]
        let alice = user("alice", token: token)
        let bob = user("bob", token: token)
        let text = #"{"text": "\#(sampleText)"}"#

        // Operations.
        try await log.send(client, .get, "/health", expect: .ok)
        try await log.send(client, .get, "/ready", expect: .ok)

        // POST /v1/analyze: success, cached, module subset, degraded.
        try await log.send(client, .post, "/v1/analyze", body: text, headers: alice, expect: .ok)
        try await log.send(client, .post, "/v1/analyze", body: text, headers: alice, expect: .ok)
        try await log.send(
            client, .post, "/v1/analyze", body: #"{"text": "We stayed in because it rained.", "modules": ["reasoning", "theory-of-mind"]}"#, headers: alice,
            expect: .ok)
        var slow = user("slow-analyze", tier: "premium", token: token)
        slow[.xDeadline] = "50"
        let degraded = try await log.send(
            client, .post, "/v1/analyze", body: #"{"text": "She said she would call, but she never did, so I left."}"#, headers: slow, expect: .ok)
        if degraded.json["degraded"] as? Bool != true {
            log.notes.append("the slow analysis was not degraded; the degraded branch of AnalysisResponse went unchecked")
        }

        // Every POST /v1 route with a body: the body-level errors.
        let bodyRoutes = [
            "/v1/analyze", "/v1/analyze/batch", "/v1/emotion", "/v1/reasoning", "/v1/values", "/v1/theory-of-mind", "/v1/narrative", "/v1/entries",
        ]
        let validBody = { (path: String) in path.hasSuffix("/batch") ? #"{"items": [{"text": "A fine day."}]}"# : #"{"text": "A fine day."}"# }
        let oversized = #"{"text": "\#(String(repeating: "a", count: 5000))"}"#
        for path in bodyRoutes {
            try await log.send(client, .post, path, body: "{not json", headers: bob, expect: .badRequest, code: "invalid_json")
            try await log.send(client, .post, path, body: "", headers: bob, expect: .badRequest, code: "invalid_json")
            try await log.send(
                client, .post, path, body: validBody(path), contentType: "text/plain", headers: bob, expect: .unsupportedMediaType,
                code: "unsupported_media_type")
            try await log.send(
                client, .post, path, body: validBody(path), contentType: nil, headers: bob, expect: .unsupportedMediaType, code: "unsupported_media_type")
            try await log.send(client, .post, path, body: oversized, headers: bob, expect: .contentTooLarge, code: "payload_too_large")
            try await log.send(client, .post, path, body: "[1, 2]", headers: bob, expect: .unprocessableContent, code: "validation_failed")
            try await log.send(client, .post, path, body: "{}", headers: bob, expect: .unprocessableContent, code: "validation_failed")
            if !path.hasSuffix("/batch") {
                try await log.send(client, .post, path, body: #"{"text": ""}"#, headers: bob, expect: .unprocessableContent, code: "validation_failed")
                try await log.send(client, .post, path, body: #"{"text": 3}"#, headers: bob, expect: .unprocessableContent, code: "validation_failed")
                try await log.send(client, .post, path, body: #"{"text": null}"#, headers: bob, expect: .unprocessableContent, code: "validation_failed")
                // Over the free tier's text cap (1024 bytes) but under maxBodyBytes.
                let long = #"{"text": "\#(String(repeating: "word ", count: 400))"}"#
                try await log.send(
                    client, .post, path, body: long, headers: user("freeloader", tier: "free", token: token), expect: .contentTooLarge,
                    code: "payload_too_large")
            }
        }
        // POST /v1/analyze: module-list errors.
        try await log.send(
            client, .post, "/v1/analyze", body: #"{"text": "hi", "modules": []}"#, headers: bob, expect: .unprocessableContent, code: "validation_failed")
        try await log.send(
            client, .post, "/v1/analyze", body: #"{"text": "hi", "modules": "emotion"}"#, headers: bob, expect: .unprocessableContent, code: "validation_failed"
        )
        try await log.send(
            client, .post, "/v1/analyze", body: #"{"text": "hi", "modules": ["emotion", "astrology"]}"#, headers: bob, expect: .unprocessableContent,
            code: "unknown_module")

        // Single-module routes: success.
        for path in ["/v1/emotion", "/v1/reasoning", "/v1/values", "/v1/theory-of-mind", "/v1/narrative"] {
            try await log.send(client, .post, path, body: text, headers: alice, expect: .ok)
        }

        // POST /v1/analyze/batch: items that fail on their own inside a 200, and whole-request 422s.
        let batch =
            #"{"items": [{"text": "I am glad."}, {"text": ""}, {"text": "It rained, so we stayed in.", "modules": ["reasoning"]}, {"text": "x", "modules": ["nope"]}, {"text": "y", "modules": []}], "modules": ["emotion"]}"#
        try await log.send(client, .post, "/v1/analyze/batch", body: batch, headers: alice, expect: .ok)
        try await log.send(client, .post, "/v1/analyze/batch", body: #"{"items": [{"text": "All five modules."}]}"#, headers: alice, expect: .ok)
        try await log.send(client, .post, "/v1/analyze/batch", body: #"{"items": []}"#, headers: bob, expect: .unprocessableContent, code: "validation_failed")
        let nine = Array(repeating: #"{"text": "ok"}"#, count: 9).joined(separator: ",")
        try await log.send(
            client, .post, "/v1/analyze/batch", body: #"{"items": [\#(nine)]}"#, headers: user("crowd", tier: "free", token: token),
            expect: .unprocessableContent, code: "validation_failed")
        try await log.send(
            client, .post, "/v1/analyze/batch", body: #"{"items": [{"text": "a"}], "modules": []}"#, headers: bob, expect: .unprocessableContent,
            code: "validation_failed")
        try await log.send(
            client, .post, "/v1/analyze/batch", body: #"{"items": [{"text": "a"}], "modules": ["astrology"]}"#, headers: bob, expect: .unprocessableContent,
            code: "unknown_module")
        try await log.send(client, .post, "/v1/analyze/batch", body: #"{"items": "a"}"#, headers: bob, expect: .unprocessableContent, code: "validation_failed")

        // Entries: create (with and without Idempotency-Key, and its replay), list, page, delete.
        let carol = user("carol", token: token)
        var keyed = carol
        keyed[.idempotency] = "write-1"
        let created = try await log.send(
            client, .post, "/v1/entries", body: #"{"text": "I value my family and my freedom."}"#, headers: keyed, expect: .created)
        try await log.send(client, .post, "/v1/entries", body: #"{"text": "I value my family and my freedom."}"#, headers: keyed, expect: .created)
        try await log.send(client, .post, "/v1/entries", body: #"{"text": "Success at work matters a lot to me."}"#, headers: carol, expect: .created)
        var badKey = carol
        badKey[.idempotency] = String(repeating: "k", count: 300)
        try await log.send(client, .post, "/v1/entries", body: #"{"text": "Keyed badly."}"#, headers: badKey, expect: .badRequest, code: "invalid_request")
        var slowEntry = user("slow-entry", token: token)
        slowEntry[.xDeadline] = "50"
        try await log.send(
            client, .post, "/v1/entries", body: #"{"text": "Something to keep, if there is time."}"#, headers: slowEntry, expect: .gatewayTimeout,
            code: "deadline_exceeded")

        let page = try await log.send(client, .get, "/v1/entries?limit=1", headers: carol, expect: .ok)
        if let cursor = page.json["next_cursor"] as? String {
            let escaped = cursor.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? cursor
            try await log.send(client, .get, "/v1/entries?limit=1&cursor=\(escaped)", headers: carol, expect: .ok)
        } else {
            log.violations.append("[auth on] GET /v1/entries?limit=1 with two entries gave no next_cursor: the cursor path went unchecked")
        }
        try await log.send(client, .get, "/v1/entries", headers: carol, expect: .ok)
        try await log.send(client, .get, "/v1/entries", headers: user("nobody", token: token), expect: .ok)
        for bad in ["limit=0", "limit=201", "limit=abc"] {
            try await log.send(client, .get, "/v1/entries?\(bad)", headers: carol, expect: .badRequest, code: "invalid_request")
        }
        try await log.send(client, .get, "/v1/entries?cursor=garbage", headers: carol, expect: .badRequest, code: "invalid_request")

        // Profile: built, then from the cache.
        try await log.send(client, .get, "/v1/profile", headers: carol, expect: .ok)
        let cached = try await log.send(client, .get, "/v1/profile", headers: carol, expect: .ok)
        if cached.json["cached"] as? Bool != true { log.notes.append("the second profile was not cached; the cached branch went unchecked") }
        try await log.send(client, .get, "/v1/profile", headers: user("nobody", token: token), expect: .ok)

        if let id = (created.json["entry"] as? [String: Any])?["id"] as? String {
            try await log.send(client, .delete, "/v1/entries/\(id)", headers: bob, expect: .notFound, code: "not_found")
            try await log.send(client, .delete, "/v1/entries/\(id)", headers: carol, expect: .ok)
            try await log.send(client, .delete, "/v1/entries/\(id)", headers: carol, expect: .notFound, code: "not_found")
        } else {
            log.violations.append("[auth on] POST /v1/entries gave no entry.id: DELETE /v1/entries/{id} 200 went unchecked")
        }
        try await log.send(client, .delete, "/v1/entries/no-such-entry", headers: carol, expect: .notFound, code: "not_found")
        try await log.send(client, .get, "/v1/profile", headers: carol, expect: .ok)
        try await log.send(client, .delete, "/v1/user", headers: carol, expect: .ok)
        try await log.send(client, .delete, "/v1/user", headers: carol, expect: .ok)

        // Every /v1 operation: 401 without or with a wrong token, 400 without or with a bad identity.
        let v1: [(HTTPRequest.Method, String, String?)] =
            bodyRoutes.map { (.post, $0, validBody($0)) } + [
                (.get, "/v1/entries", nil), (.delete, "/v1/entries/some-id", nil), (.delete, "/v1/user", nil), (.get, "/v1/profile", nil),
            ]
        for (method, path, body) in v1 {
            try await log.send(client, method, path, body: body, headers: user("u1"), expect: .unauthorized, code: "unauthorized")
            try await log.send(client, method, path, body: body, headers: user("u1", token: token + "x"), expect: .unauthorized, code: "unauthorized")
            try await log.send(client, method, path, body: body, headers: [.authorization: "Bearer \(token)"], expect: .badRequest, code: "invalid_request")
            try await log.send(
                client, method, path, body: body, headers: user(String(repeating: "u", count: 129), token: token), expect: .badRequest, code: "invalid_request")
            try await log.send(client, method, path, body: body, headers: user("u1", tier: "gold", token: token), expect: .badRequest, code: "invalid_request")
        }
        // X-Request-Deadline-Ms that is not a positive integer (read by the routes that analyse).
        var badDeadline = user("u1", token: token)
        badDeadline[.xDeadline] = "soon"
        try await log.send(client, .post, "/v1/analyze", body: text, headers: badDeadline, expect: .badRequest, code: "invalid_request")
        try await log.send(
            client, .post, "/v1/analyze/batch", body: validBody("/v1/analyze/batch"), headers: badDeadline, expect: .badRequest, code: "invalid_request")
        try await log.send(
            client, .post, "/v1/entries", body: #"{"text": "Deadline soon."}"#, headers: badDeadline, expect: .badRequest, code: "invalid_request")

        // 429: a free user with a budget of 3 spends it, then every /v1 operation is refused.
        let frugal = user("frugal", tier: "free", token: token)
        for i in 0..<3 {
            try await log.send(client, .post, "/v1/analyze", body: #"{"text": "Budget item \#(i).", "modules": ["emotion"]}"#, headers: frugal, expect: .ok)
        }
        for (method, path, body) in v1 {
            try await log.send(client, method, path, body: body, headers: frugal, expect: .tooManyRequests, code: "rate_limited")
        }

        // Admin: 401 without the admin token (none, the service token, a wrong one).
        let adminRoutes: [(HTTPRequest.Method, String)] = [
            (.get, "/admin/models"), (.post, "/admin/models/emotion/load"), (.post, "/admin/models/emotion/unload"),
            (.post, "/admin/init-schema"), (.post, "/admin/cache/warm"),
        ]
        for (method, path) in adminRoutes {
            let body: String? = method == .post ? "" : nil
            try await log.send(client, method, path, body: body, contentType: nil, expect: .unauthorized, code: "unauthorized")
            try await log.send(
                client, method, path, body: body, contentType: nil, headers: [.authorization: "Bearer \(token)"], expect: .unauthorized, code: "unauthorized")
            try await log.send(
                client, method, path, body: body, contentType: nil, headers: [.authorization: "Basic \(adminToken)"], expect: .unauthorized,
                code: "unauthorized")
        }
        try await log.send(client, .get, "/admin/models", headers: admin, expect: .ok)
        try await log.send(client, .post, "/admin/models/narrative/load", body: "", contentType: nil, headers: admin, expect: .ok)  // already loaded
        try await log.send(client, .post, "/admin/models/narrative/unload", body: "", contentType: nil, headers: admin, expect: .ok)
        try await log.send(client, .post, "/admin/models/narrative/unload", body: "", contentType: nil, headers: admin, expect: .ok)  // already unloaded
        try await log.get(client, "/admin/models", headers: admin)
        try await log.send(client, .post, "/admin/models/narrative/load", body: "", contentType: nil, headers: admin, expect: .ok)
        try await log.send(client, .post, "/admin/models/theory-of-mind/unload", body: "", contentType: nil, headers: admin, expect: .ok)
        try await log.send(client, .post, "/admin/models/theory_of_mind/load", body: "", contentType: nil, headers: admin, expect: .ok)
        try await log.send(
            client, .post, "/admin/models/astrology/load", body: "", contentType: nil, headers: admin, expect: .unprocessableContent, code: "unknown_module")
        try await log.send(
            client, .post, "/admin/models/astrology/unload", body: "", contentType: nil, headers: admin, expect: .unprocessableContent, code: "unknown_module")
        try await log.send(client, .post, "/admin/init-schema", body: "", contentType: nil, headers: admin, expect: .ok)

        // POST /admin/cache/warm: with and without a body, and its errors.
        try await log.send(client, .post, "/admin/cache/warm", body: #"{"texts": ["Warm me up.", "And me too.", " "]}"#, headers: admin, expect: .ok)
        try await log.send(
            client, .post, "/admin/cache/warm", body: #"{"texts": ["Warm me up."], "modules": ["emotion", "theory-of-mind"]}"#, headers: admin, expect: .ok)
        try await log.send(client, .post, "/admin/cache/warm", body: "{}", headers: admin, expect: .ok)
        try await log.send(client, .post, "/admin/cache/warm", body: "", contentType: nil, headers: admin, expect: .ok)
        try await log.send(client, .post, "/admin/cache/warm", headers: admin, expect: .ok)  // no body at all
        try await log.send(client, .post, "/admin/cache/warm", body: "{not json", headers: admin, expect: .badRequest, code: "invalid_json")
        try await log.send(
            client, .post, "/admin/cache/warm", body: #"{"texts": ["x"]}"#, contentType: "text/plain", headers: admin, expect: .unsupportedMediaType,
            code: "unsupported_media_type")
        try await log.send(
            client, .post, "/admin/cache/warm", body: #"{"texts": "x"}"#, headers: admin, expect: .unprocessableContent, code: "validation_failed")
        try await log.send(
            client, .post, "/admin/cache/warm", body: #"{"texts": ["x"], "modules": []}"#, headers: admin, expect: .unprocessableContent,
            code: "validation_failed")
        try await log.send(
            client, .post, "/admin/cache/warm", body: #"{"texts": ["x"], "modules": ["astrology"]}"#, headers: admin, expect: .unprocessableContent,
            code: "unknown_module")
        let huge = #"{"texts": ["\#(String(repeating: "b", count: 4096 * 16 + 100))"]}"#
        try await log.send(client, .post, "/admin/cache/warm", body: huge, headers: admin, expect: .contentTooLarge, code: "payload_too_large")

        // Unknown routes (and a known path with a method it does not serve): 404 `not_found`.
        try await log.unknownRoute(client, .get, "/v2/nothing")
        try await log.unknownRoute(client, .get, "/v1/nothing", headers: alice)
        try await log.unknownRoute(client, .post, "/admin/nothing", headers: admin)
        try await log.unknownRoute(client, .get, "/v1/analyze", headers: alice)
        try await log.unknownRoute(client, .delete, "/health")

        try await log.send(client, .get, "/metrics", expect: .ok)

        // Draining: /ready answers 503 (a probe answer), /health still 200.
        server.readiness.set(.draining)
        try await log.send(client, .get, "/ready", expect: .serviceUnavailable)
        try await log.send(client, .get, "/health", expect: .ok)
        server.readiness.set(.starting)
        try await log.send(client, .get, "/ready", expect: .serviceUnavailable)
    }

    // MARK: - Auth off

    private static func exerciseOpen(_ client: any TestClientProtocol, _ log: inout ConformanceLog) async throws {
        try await log.send(client, .get, "/health", expect: .ok)
        try await log.send(client, .get, "/ready", expect: .ok)
        try await log.send(client, .post, "/v1/analyze", body: #"{"text": "Anonymous and happy."}"#, expect: .ok)
        try await log.send(client, .post, "/v1/emotion", body: #"{"text": "Anonymous and happy."}"#, expect: .ok)
        try await log.send(
            client, .post, "/v1/analyze/batch", body: #"{"items": [{"text": "One."}, {"text": " "}]}"#, headers: user("dave", tier: "PREMIUM"), expect: .ok)
        let created = try await log.send(client, .post, "/v1/entries", body: #"{"text": "I hope tomorrow will be calmer."}"#, expect: .created)
        try await log.send(client, .get, "/v1/entries", expect: .ok)
        try await log.send(client, .get, "/v1/profile", expect: .ok)
        if let id = (created.json["entry"] as? [String: Any])?["id"] as? String {
            try await log.send(client, .delete, "/v1/entries/\(id)", expect: .ok)
        }
        try await log.send(client, .delete, "/v1/user", expect: .ok)
        try await log.send(
            client, .post, "/v1/analyze", body: #"{"text": "hi"}"#, headers: user("erin", tier: "gold"), expect: .badRequest, code: "invalid_request")

        // No admin token configured: every admin route is 403, whatever is presented.
        let adminRoutes: [(HTTPRequest.Method, String)] = [
            (.get, "/admin/models"), (.post, "/admin/models/emotion/load"), (.post, "/admin/models/emotion/unload"),
            (.post, "/admin/init-schema"), (.post, "/admin/cache/warm"),
        ]
        for (method, path) in adminRoutes {
            let body: String? = method == .post ? "" : nil
            try await log.send(client, method, path, body: body, contentType: nil, expect: .forbidden, code: "forbidden")
            try await log.send(
                client, method, path, body: body, contentType: nil, headers: [.authorization: "Bearer anything"], expect: .forbidden, code: "forbidden")
        }
        try await log.unknownRoute(client, .get, "/nothing/here")
        try await log.send(client, .get, "/metrics", expect: .ok)
    }
}

/// The findings of a run: violations (failures), notes (printed), and which operation answered
/// which statuses.
private struct ConformanceLog: Sendable {
    let doc: OpenAPIDocument
    var server: String
    var violations: [String] = []
    var notes: [String] = []
    /// "METHOD template" → statuses seen.
    var exercised: [String: Set<Int>] = [:]
    var requests = 0
    /// "METHOD template" → "status code" of /v1 errors to an identified caller without RateLimit-*.
    private var rateLimitGaps: [String: Set<String>] = [:]

    init(doc: OpenAPIDocument, server: String) {
        self.doc = doc
        self.server = server
    }

    /// Sends a request and checks the response against the document; `expect` (and `code`, the
    /// error code) is what this test drives the server to, checked too so the coverage is real.
    @discardableResult
    mutating func send(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ path: String,
        body: String? = nil, contentType: String? = "application/json", headers: HTTPFields = [:],
        expect status: HTTPResponse.Status, code: String? = nil
    ) async throws -> TestResponse {
        var fields = headers
        if body != nil, let contentType { fields[.contentType] = contentType }
        let response = try await client.execute(uri: path, method: method, headers: fields, body: body.map { ByteBuffer(string: $0) })
        requests += 1
        let what = "[\(server)] \(method.rawValue) \(path.prefix(80)) → \(response.status.code)"
        if response.status != status {
            violations.append("\(what): expected \(status.code) \(code ?? "") (body: \(response.text.prefix(200)))")
        } else if let code, response.errorCode != code {
            violations.append("\(what): expected error code \(code), got \(response.errorCode ?? "none")")
        }
        check(response, method: method, path: path, what: what)
        return response
    }

    /// A request whose answer is only looked at (no expected status), still checked.
    mutating func get(_ client: any TestClientProtocol, _ path: String, headers: HTTPFields) async throws {
        let response = try await client.execute(uri: path, method: .get, headers: headers, body: nil)
        requests += 1
        check(response, method: .get, path: path, what: "[\(server)] GET \(path) → \(response.status.code)")
    }

    /// A route the server does not have: 404 `not_found` with the `NotFoundError` body.
    mutating func unknownRoute(_ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ path: String, headers: HTTPFields = [:]) async throws {
        let response = try await client.execute(uri: path, method: method, headers: headers, body: nil)
        requests += 1
        let what = "[\(server)] \(method.rawValue) \(path) → \(response.status.code)"
        if response.status != .notFound { violations.append("\(what): expected 404 not_found for an unknown route") }
        guard let schema = doc.schema(named: "NotFoundError") else {
            violations.append("openapi.yaml has no components/schemas/NotFoundError")
            return
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(response.text.utf8), options: [.fragmentsAllowed])
        } catch {
            violations.append("\(what): body is not JSON (\(response.text.prefix(120)))")
            return
        }
        for violation in doc.validate(json, against: schema) { violations.append("\(what): NotFoundError \(violation)") }
        checkRequestID(response, what: what)
        checkMediaType(response, documented: "application/json", what: what)
    }

    private mutating func check(_ response: TestResponse, method: HTTPRequest.Method, path: String, what: String) {
        let status = Int(response.status.code)
        if let template = doc.template(for: path) {
            exercised["\(method.rawValue) \(template)", default: []].insert(status)
        }
        for violation in doc.validateResponse(method: method.rawValue, path: path, status: status, body: response.body.readableBytesView) {
            violations.append("\(what): \(violation)")
        }
        var headers: [String: String] = [:]
        for field in response.headers {
            headers[field.name.rawName] = headers[field.name.rawName].map { "\($0), \(field.value)" } ?? field.value
        }
        for violation in doc.validateHeaders(method: method.rawValue, path: path, status: status, headers: headers) {
            violations.append("\(what): \(violation)")
        }
        if let spec = doc.response(method: method.rawValue, path: path, status: status), let mediaType = spec.mediaType {
            checkMediaType(response, documented: mediaType, what: what)
        }
        checkRequestID(response, what: what)
        noteRateLimitHeaders(response, method: method, path: path, status: status)
    }

    /// X-Request-Id is on every response and is the body's `request_id` (or `error.request_id`).
    private mutating func checkRequestID(_ response: TestResponse, what: String) {
        guard let header = response.headers[.xRequestID], !header.isEmpty else {
            violations.append("\(what): no X-Request-Id")
            return
        }
        let json = response.json
        let inBody = json["request_id"] as? String ?? (json["error"] as? [String: Any])?["request_id"] as? String
        if let inBody, inBody != header {
            violations.append("\(what): body request_id \(inBody) is not X-Request-Id \(header)")
        }
    }

    /// The Content-Type's media type is the documented one (parameters aside, except that a
    /// documented parameter such as Prometheus' `version=0.0.4` must be sent).
    private mutating func checkMediaType(_ response: TestResponse, documented: String, what: String) {
        guard let sent = response.headers[.contentType] else {
            violations.append("\(what): no Content-Type (documented \(documented))")
            return
        }
        func parts(_ s: String) -> (base: String, parameters: Set<String>) {
            let pieces = s.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            return (pieces.first ?? "", Set(pieces.dropFirst()))
        }
        let (sentBase, sentParameters) = parts(sent)
        let (documentedBase, documentedParameters) = parts(documented)
        if sentBase != documentedBase || !documentedParameters.isSubset(of: sentParameters) {
            violations.append("\(what): Content-Type \(sent), documented \(documented)")
        }
    }

    /// The document's description says /v1 responses carry RateLimit-* "on errors once the caller
    /// has been identified"; the response objects make them optional on errors, so a missing one
    /// is a note (one per operation and status), not a violation.
    private mutating func noteRateLimitHeaders(_ response: TestResponse, method: HTTPRequest.Method, path: String, status: Int) {
        guard path.hasPrefix("/v1/"), status >= 400, status != 401, let code = response.errorCode else { return }
        if code == "invalid_request", let field = response.errorField, field == "X-User-Id" || field == "X-User-Tier" { return }
        guard response.headers[.rlLimit] == nil, let template = doc.template(for: path) else { return }
        rateLimitGaps["\(method.rawValue) \(template)", default: []].insert("\(status) \(code)")
    }

    /// The notes, with the RateLimit-* gaps folded into one line per operation.
    var allNotes: [String] {
        rateLimitGaps.keys.sorted().map { "identified caller, no RateLimit-* on errors: \($0): \(rateLimitGaps[$0]!.sorted().joined(separator: ", "))" } + notes
    }
}
