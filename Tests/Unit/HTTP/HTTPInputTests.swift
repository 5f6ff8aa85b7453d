import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Soma
import SomaHTTP
import Testing

/// Inputs that must be refused rather than resolved silently: ids that would merge, repeated
/// headers and members, request ids that could plant log fields, reads that would write.
@Suite(.timeLimit(.minutes(1))) struct HTTPInputTests {
    /// A user-id field from raw bytes, as a client can put on the wire.
    private func rawUser(_ bytes: [UInt8]) -> HTTPFields {
        var fields = HTTPFields()
        fields.append(HTTPField(name: .xUserID, lenientValue: bytes))
        return fields
    }

    @Test func userIdsThatAreNotUTF8AreRefusedSoDistinctIdsCannotMerge() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let written = try await client.post("/v1/entries", #"{"text":"Mine alone."}"#, headers: user("victim\u{FFFD}1"))
            #expect(written.status == .created)
            for bytes in [Array("victim".utf8) + [0xFF, 0x31], Array("victim".utf8) + [0xFE, 0x31], Array("victim".utf8) + [0xC3]] {
                let listed = try await client.get("/v1/entries", headers: rawUser(bytes))
                #expect(listed.status == .badRequest)
                #expect(listed.errorField == "X-User-Id")
            }
            // The valid id itself still reads its entry.
            let own = try await client.get("/v1/entries", headers: user("victim\u{FFFD}1"))
            #expect((own.json["entries"] as? [Any])?.count == 1)
        }
    }

    @Test func aRepeatedUserIdIsRefused() async throws {
        try await withRouter(try await TestServer.make()) { client in
            var fields: HTTPFields = [.xUserID: "alice"]
            fields.append(HTTPField(name: .xUserID, value: "bob"))
            let response = try await client.get("/v1/entries", headers: fields)
            #expect(response.status == .badRequest)
            #expect(response.errorField == "X-User-Id")
        }
    }

    @Test(arguments: [
        #"{"text":"A","text":"B"}"#,
        #"{"text":"A","modules":["emotion"],"t\u0065xt":"B"}"#,
        #"{"items":[{"text":"A","text":"B"}]}"#,
    ])
    func aMemberRepeatedInOneObjectIsRefused(body: String) async throws {
        try await withRouter(try await TestServer.make()) { client in
            let path = body.contains("items") ? "/v1/analyze/batch" : "/v1/analyze"
            let response = try await client.post(path, body, headers: user("alice"))
            #expect(response.status == .badRequest)
            #expect(response.errorCode == "invalid_json")
        }
    }

    @Test func theSameNameInDifferentObjectsIsFine() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let response = try await client.post(
                "/v1/analyze/batch", #"{"items":[{"text":"One, \"text\": here."},{"text":"Two."}],"modules":["emotion"]}"#, headers: user("alice"))
            #expect(response.status == .ok)
        }
    }

    @Test func requestIdsKeepToASafeAlphabet() async throws {
        try await withRouter(try await TestServer.make()) { client in
            for sane in ["trace-abc-123", "0af7651916cd43dd8448eb211c80319c", "a.b_c:d-e"] {
                #expect(try await client.get("/health", headers: [.xRequestID: sane]).headers[.xRequestID] == sane)
            }
            for insane in ["a b", "x\"y", "user=admin", "a\\b", String(repeating: "x", count: 129)] {
                let echoed = try await client.get("/health", headers: [.xRequestID: insane]).headers[.xRequestID]
                #expect(echoed != insane)
                #expect(echoed?.count == 32)
            }
        }
    }

    @Test func readingTheProfileOfAnUnknownUserStoresNothing() async throws {
        let server = try await TestServer.make()
        let store = server.runtime.store
        try await withRouter(server) { client in
            let profile = try await client.get("/v1/profile", headers: user("never-seen"))
            #expect(profile.status == .ok)
            #expect(try await store.profile(user: "never-seen") == nil)
            _ = try await client.post("/v1/entries", #"{"text":"Now I have written something."}"#, headers: user("never-seen"))
            _ = try await client.get("/v1/profile", headers: user("never-seen"))
            #expect(try await store.profile(user: "never-seen") != nil)
        }
    }

    @Test func aUserWhoKeepsSendingInvalidRequestsIsRefusedAndOnlyThatUser() async throws {
        try await withRouter(try await TestServer.make { $0.http.invalidRequestsPerMinute = 3 }) { client in
            for body in [#"{"text":"#, #"{"text": 5}"#, #"{"text":"A","text":"B"}"#] {
                let response = try await client.post("/v1/analyze", body, headers: user("alice"))
                #expect([400, 422].contains(response.status.code))
            }
            // Even a valid request of hers is refused now, before its body is read.
            let refused = try await client.post("/v1/analyze", #"{"text":"Fine."}"#, headers: user("alice"))
            #expect(refused.status == .tooManyRequests)
            #expect(refused.errorCode == "rate_limited")
            #expect(refused.headers[.retryAfter] != nil)
            #expect(refused.headers[HTTPField.Name("RateLimit-Remaining")!] == "0")
            // Someone else is not affected.
            #expect(try await client.post("/v1/analyze", #"{"text":"Fine."}"#, headers: user("bob")).status == .ok)
        }
    }

    @Test func anIdempotencyKeyReusedForADifferentBodyIs422() async throws {
        try await withRouter(try await TestServer.make()) { client in
            var headers = user("alice")
            headers[HTTPField.Name("Idempotency-Key")!] = "order-1"
            let first = try await client.post("/v1/entries", #"{"text":"The first text."}"#, headers: headers)
            #expect(first.status == .created)
            let retry = try await client.post("/v1/entries", #"{"text":"The first text."}"#, headers: headers)
            #expect(retry.status == .created)
            #expect(retry.json["id"] as? String == first.json["id"] as? String)
            let reused = try await client.post("/v1/entries", #"{"text":"Another text."}"#, headers: headers)
            #expect(reused.status == .unprocessableContent)
            #expect(reused.errorCode == "idempotency_key_reused")
            #expect(reused.errorField == "Idempotency-Key")
            let listed = try await client.get("/v1/entries", headers: user("alice"))
            #expect((listed.json["entries"] as? [Any])?.count == 1)
        }
    }

    @Test func theDeadlineHeaderIsCheckedOnEveryRouteAndAnyPositiveIntegerIsCapped() async throws {
        try await withRouter(try await TestServer.make()) { client in
            for (method, path) in [("GET", "/v1/entries"), ("DELETE", "/v1/user"), ("GET", "/v1/profile"), ("DELETE", "/v1/entries/nope")] {
                var headers = user("dee")
                headers[.xDeadline] = "abc"
                let response = try await client.execute(uri: path, method: HTTPRequest.Method(method)!, headers: headers, body: nil)
                #expect(response.status == .badRequest, "\(method) \(path)")
                #expect(response.errorField == "X-Request-Deadline-Ms")
            }
            for value in ["18446744073709551615", "99999999999999999999999999", "00012"] {
                var headers = user("dee")
                headers[.xDeadline] = value
                #expect(try await client.post("/v1/emotion", #"{"text":"Fine."}"#, headers: headers).status == .ok, "\(value)")
            }
            for value in ["0", "000", "-5", "1e3", "5ms"] {
                var headers = user("dee")
                headers[.xDeadline] = value
                #expect(try await client.post("/v1/emotion", #"{"text":"Fine."}"#, headers: headers).status == .badRequest, "\(value)")
            }
        }
    }

    @Test func userIdsAreLimitedTo128CharactersNotBytes() async throws {
        try await withRouter(try await TestServer.make()) { client in
            let longest = try await client.get("/v1/entries", headers: user(String(repeating: "é", count: 128)))
            #expect(longest.status == .ok, "128 characters, 256 bytes")
            let tooLong = try await client.get("/v1/entries", headers: user(String(repeating: "é", count: 129)))
            #expect(tooLong.status == .badRequest)
        }
    }

    @Test(arguments: [
        ("/v1/analyze", #"{"text":"Hi.","module":["emotion"]}"#, "module"),
        ("/v1/emotion", #"{"text":"Hi.","extra":1}"#, "extra"),
        ("/v1/entries", #"{"text":"Hi.","txt":"typo"}"#, "txt"),
        ("/v1/analyze/batch", #"{"items":[{"text":"Hi."},{"text":"Yo.","mods":[]}]}"#, "items[1].mods"),
    ])
    func aMemberTheBodyDoesNotDefineIsRefusedNotIgnored(path: String, body: String, field: String) async throws {
        try await withRouter(try await TestServer.make()) { client in
            let response = try await client.post(path, body, headers: user("alice"))
            #expect(response.status == .unprocessableContent)
            #expect(response.errorCode == "validation_failed")
            #expect(response.errorField == field)
        }
    }

    @Test func aRepeatedIdempotencyKeyIsRefused() async throws {
        try await withRouter(try await TestServer.make()) { client in
            var headers = user("alice")
            headers.append(HTTPField(name: HTTPField.Name("Idempotency-Key")!, value: "a"))
            headers.append(HTTPField(name: HTTPField.Name("Idempotency-Key")!, value: "b"))
            let response = try await client.post("/v1/entries", #"{"text":"Keyed twice."}"#, headers: headers)
            #expect(response.status == .badRequest)
            #expect(response.errorField == "Idempotency-Key")
        }
    }

}
