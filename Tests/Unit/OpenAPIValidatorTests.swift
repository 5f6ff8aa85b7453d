// Over 500 lines on purpose: the contract's every operation and schema keyword, each with a case
// that must pass and one that must fail, against the one validator.
import Foundation
import Soma
import SomaHTTP
import Testing

/// `openapi.yaml` and the validator the HTTP tests check responses with.
struct OpenAPIValidatorTests {
    static let operations: Set<String> = [
        "POST /v1/analyze", "POST /v1/analyze/batch", "POST /v1/emotion", "POST /v1/reasoning", "POST /v1/values",
        "POST /v1/theory-of-mind", "POST /v1/narrative", "POST /v1/entries", "GET /v1/entries",
        "DELETE /v1/entries/{id}", "DELETE /v1/user", "GET /v1/profile", "GET /health", "GET /ready", "GET /metrics",
        "GET /admin/models", "POST /admin/models/{module}/load", "POST /admin/models/{module}/unload",
        "POST /admin/init-schema", "POST /admin/cache/warm",
    ]

    static let codes: [APIError.Code] = [
        .invalidJSON, .invalidRequest, .unauthorized, .forbidden, .notFound, .requestTimeout, .payloadTooLarge, .unsupportedMediaType,
        .validationFailed, .unknownModule, .idempotencyKeyReused, .rateLimited, .overloaded, .unavailable, .deadlineExceeded, .internal,
    ]

    /// A valid analysis envelope with all five modules.
    static let analysis = #"""
        {
          "request_id": "0193c4e2-7b1a-7c3e-9f00-1a2b3c4d5e6f",
          "user_id": "user-42",
          "model_version": "models-2f9c1e",
          "cached": false,
          "cache": {"emotion": "miss", "reasoning": "l1", "values": "l2", "theory_of_mind": "miss", "narrative": "fallback"},
          "degraded": false,
          "results": {
            "emotion": {
              "arousal": 0.52,
              "dominant": "joy",
              "emotions": {"anger": 0, "anticipation": 0.23, "disgust": 0, "fear": 0.31, "joy": 0.62, "sadness": 0, "surprise": 0, "trust": 0.1},
              "sentences": [{"dominant": "joy", "text": "I was so happy because my sister came home.", "valence": 0.6115}],
              "valence": 0.4404
            },
            "reasoning": {
              "chains": [{"conclusion": "I was so happy", "confidence": 0.9, "marker": "because", "premises": ["my sister came home"], "relation": "causal"}],
              "depth": 1,
              "patterns": {"causal": 1, "conditional": 0, "contrastive": 0, "evidential": 0, "inferential": 0},
              "style": "causal"
            },
            "values": {
              "dimensions": {"conservation": 0, "openness_to_change": 0, "self_enhancement": 0, "self_transcendence": 1},
              "hierarchy": [
                {"evidence": ["sister"], "score": 1, "value": "benevolence"},
                {"evidence": [], "score": 0, "value": "self_direction"},
                {"evidence": [], "score": 0, "value": "stimulation"},
                {"evidence": [], "score": 0, "value": "hedonism"},
                {"evidence": [], "score": 0, "value": "achievement"},
                {"evidence": [], "score": 0, "value": "power"},
                {"evidence": [], "score": 0, "value": "security"},
                {"evidence": [], "score": 0, "value": "conformity"},
                {"evidence": [], "score": 0, "value": "tradition"},
                {"evidence": [], "score": 0, "value": "universalism"}
              ]
            },
            "theory_of_mind": {
              "agents": [{"agent": "i", "states": [{"content": "she will leave", "negated": false, "type": "emotion", "verb": "worry"}]}],
              "other_references": 1,
              "perspective_taking": 0.25,
              "self_references": 2
            },
            "narrative": {
              "arc": {"cognitive_tension": [0, 0.1, 0, 0.2, 0], "plot_progression": [0.1, 0, 0.2, 0, 0], "staging": [0.2, 0.1, 0, 0, 0.1]},
              "characters": ["i", "sister"],
              "events": [
                {"index": 0, "order": 0, "tense": "past", "text": "my sister finally came home", "time": "finally", "verb": "came"},
                {"index": 1, "order": 1, "tense": "future", "text": "she will leave again", "verb": "leave"}
              ],
              "perspective": "first_person",
              "tense": "mixed"
            }
          },
          "timings_ms": {"emotion": 0.2, "reasoning": 0.1, "total": 1}
        }
        """#

    static let errorItem = #"{"error": {"code": "validation_failed", "message": "text must not be empty", "request_id": "r-1", "field": "items[1].text"}}"#

    static func json(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
    }

    static func data(_ object: Any) throws -> Data {
        try JSONSerialization.data(withJSONObject: object, options: [.fragmentsAllowed])
    }

    /// `root` with the value at `path` replaced (`nil` removes it); numeric components index arrays.
    static func setting(_ root: Any, _ path: ArraySlice<String>, to value: Any?) -> Any? {
        guard let key = path.first else { return value }
        if var object = root as? [String: Any] {
            object[key] = setting(object[key] ?? [String: Any](), path.dropFirst(), to: value)
            return object
        }
        if var list = root as? [Any], let i = Int(key), list.indices.contains(i) {
            if let new = setting(list[i], path.dropFirst(), to: value) { list[i] = new } else { list.remove(at: i) }
            return list
        }
        return root
    }

    /// A concrete path for a template (`{id}` → `sample`, `{module}` → `emotion`).
    static func concrete(_ template: String) -> String {
        template.split(separator: "/", omittingEmptySubsequences: false).map { part in
            guard part.hasPrefix("{") else { return String(part) }
            return part == "{module}" ? "emotion" : "sample-1"
        }.joined(separator: "/")
    }

    // MARK: - The document

    @Test func documentLoadsWithEveryOperationAndResolvableReferences() throws {
        let doc = try OpenAPIDocument.load()
        #expect(doc.root["openapi"]?.string == "3.1.0")
        let ops = doc.operations
        #expect(Set(ops.map { "\($0.method) \($0.path)" }) == Self.operations)
        for op in ops {
            #expect(!op.statuses.isEmpty, "\(op.method) \(op.path) has no response")
            #expect(op.operationID != nil, "\(op.method) \(op.path) has no operationId")
            #expect(!op.statuses.contains("default"), "\(op.method) \(op.path): a default response would hide undocumented statuses")
        }
        #expect(Set(ops.compactMap(\.operationID)).count == ops.count, "operationIds are unique")
        #expect(doc.unresolvedReferences() == [])
        // The error codes are exactly the service's table.
        let documented = doc.schema(named: "ErrorCode")?.value["enum"]
        #expect(documented == .array(Self.codes.map { .string($0.rawValue) }))
    }

    @Test func everyResponseCarriesTheDocumentedHeaders() throws {
        let doc = try OpenAPIDocument.load()
        for op in doc.operations {
            let path = Self.concrete(op.path)
            for status in op.statuses.compactMap(Int.init) {
                let spec = try #require(doc.response(method: op.method, path: path, status: status))
                let label = "\(op.method) \(op.path) \(status)"
                #expect(spec.headers["X-Request-Id"]?.required == true, "\(label): X-Request-Id")
                if op.path.hasPrefix("/v1/") && (status < 400 || status == 429) {
                    for name in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
                        #expect(spec.headers[name]?.required == true, "\(label): \(name)")
                    }
                }
                if (status == 429 || status == 503) && op.path != "/ready" {
                    #expect(spec.headers["Retry-After"]?.required == true, "\(label): Retry-After")
                }
                #expect(spec.schema != nil, "\(label) has no body schema")
            }
        }
    }

    @Test func operationsListTheirErrorsAndSecurity() throws {
        let doc = try OpenAPIDocument.load()
        for op in doc.operations {
            let operation = try #require(doc.operation(method: op.method, path: Self.concrete(op.path)))
            let security = operation["security"]
            if op.path.hasPrefix("/admin/") {
                #expect(security == .array([.object(["adminToken": .array([])])]), "\(op.path)")
                for status in ["401", "403", "500"] { #expect(op.statuses.contains(status), "\(op) lacks \(status)") }
            } else if op.path.hasPrefix("/v1/") {
                #expect(security == nil, "\(op.path) takes the service token of the document")
                let names = (operation["parameters"]?.array ?? [])
                    .compactMap { doc.resolved($0)["name"]?.string }
                #expect(names.contains("X-User-Id") && names.contains("X-User-Tier") && names.contains("X-Request-Deadline-Ms"), "\(op.path)")
                var expected = ["400", "401", "429", "503", "504", "500"]
                if op.method == "POST" { expected += ["413", "415", "422"] }
                for status in expected { #expect(op.statuses.contains(status), "\(op) lacks \(status)") }
                #expect((doc.requestSchema(method: op.method, path: Self.concrete(op.path)) != nil) == (op.method == "POST"), "\(op)")
            } else {
                #expect(security == .array([]), "\(op.path) is open")
            }
        }
        let entryParameters = doc.operation(method: "POST", path: "/v1/entries")?["parameters"]?.array ?? []
        #expect(entryParameters.contains { doc.resolved($0)["name"]?.string == "Idempotency-Key" })
        #expect(doc.operation(method: "DELETE", path: "/v1/entries/x")?["responses"]?["404"] != nil)
        for action in ["load", "unload"] {
            #expect(doc.operation(method: "POST", path: "/admin/models/emotion/\(action)")?["responses"]?["422"] != nil)
        }
    }

    // MARK: - Paths

    @Test func pathTemplatesMatchConcretePaths() throws {
        let doc = try OpenAPIDocument.load()
        #expect(doc.template(for: "/v1/entries/abc") == "/v1/entries/{id}")
        #expect(doc.template(for: "/v1/entries/0193c4e2-7b1a-7c3e-9f00-1a2b3c4d5e6f") == "/v1/entries/{id}")
        #expect(doc.template(for: "/v1/entries") == "/v1/entries")
        #expect(doc.template(for: "/v1/entries?limit=10&cursor=abc") == "/v1/entries")
        #expect(doc.template(for: "/admin/models/theory_of_mind/unload") == "/admin/models/{module}/unload")
        #expect(doc.template(for: "/v1/entries/") == nil)
        #expect(doc.template(for: "/v1/entries/a/b") == nil)
        #expect(doc.template(for: "/v1/nothing") == nil)
        #expect(
            doc.responseSchema(method: "DELETE", path: "/v1/entries/abc", status: 200)
                == doc.responseSchema(method: "delete", path: "/v1/entries/xyz", status: 200))
        #expect(doc.responseSchema(method: "DELETE", path: "/v1/entries/abc", status: 200) != nil)
        #expect(
            doc.responseSchema(method: "GET", path: "/v1/entries", status: 200)?.value == .object(["$ref": .string("#/components/schemas/EntryListResponse")]))
        #expect(doc.responseSchema(method: "PUT", path: "/v1/entries", status: 200) == nil)
    }

    @Test func literalTemplatesWinAndRangesAndDefaultAreFallbacks() throws {
        let doc = try OpenAPIDocument(
            yaml: """
                openapi: 3.1.0
                info: {title: t, version: '1'}
                paths:
                  /v1/entries/{id}:
                    get:
                      responses:
                        '200': {description: one, content: {application/json: {schema: {const: one}}}}
                  /v1/entries/export:
                    get:
                      responses:
                        '200': {description: export, content: {application/json: {schema: {const: export}}}}
                        '4XX': {description: client, content: {application/json: {schema: {const: client}}}}
                        default: {description: other, content: {application/json: {schema: {const: other}}}}
                  /v1/{kind}/latest:
                    get:
                      responses:
                        '200': {description: latest, content: {application/json: {schema: {const: latest}}}}
                        '204': {description: nothing}
                """)
        #expect(doc.template(for: "/v1/entries/export") == "/v1/entries/export")
        #expect(doc.template(for: "/v1/entries/other") == "/v1/entries/{id}")
        // Both /v1/entries/{id} and /v1/{kind}/latest match: the earlier literal wins.
        #expect(doc.template(for: "/v1/entries/latest") == "/v1/entries/{id}")
        #expect(doc.template(for: "/v1/notes/latest") == "/v1/{kind}/latest")
        func constant(_ status: Int, _ path: String = "/v1/entries/export") -> JSONValue? {
            doc.responseSchema(method: "GET", path: path, status: status)?.value["const"]
        }
        #expect(constant(200) == .string("export"))
        #expect(constant(404) == .string("client"))
        #expect(constant(503) == .string("other"))
        #expect(constant(200, "/v1/entries/42") == .string("one"))
        #expect(constant(500, "/v1/entries/42") == nil)
        // A response without content: no schema, and only an empty body conforms.
        #expect(doc.responseSchema(method: "GET", path: "/v1/notes/latest", status: 204) == nil)
        #expect(doc.validateResponse(method: "GET", path: "/v1/notes/latest", status: 204, body: []) == [])
        #expect(doc.validateResponse(method: "GET", path: "/v1/notes/latest", status: 204, body: Array("{}".utf8)).count == 1)
    }

    // MARK: - Booleans and numbers

    @Test func booleansAndNumbersAreToldApart() throws {
        let parsed = try #require(try Self.json("[true, false, 1, 0, 1.0, 1.5, -3, 1e300, 12345678901234567890]") as? [Any])
        #expect(
            try parsed.map { try JSONValue(any: $0).kind } == [
                "boolean", "boolean", "integer", "integer", "integer", "number", "integer", "integer", "integer",
            ])
        #expect(try JSONValue(any: parsed[0]) == .bool(true))
        #expect(try JSONValue(any: parsed[2]) == .number(1))
        let natives: [Any] = [
            true, false, 1, 0, 2.5, Float(0.5), Int8(1), UInt64(7), NSNumber(value: true), NSNumber(value: false), NSNumber(value: 1), NSNumber(value: 0),
            NSNumber(value: 1.0),
        ]
        #expect(
            try natives.map { try JSONValue(any: $0).kind } == [
                "boolean", "boolean", "integer", "integer", "number", "number", "integer", "integer", "boolean", "boolean", "integer", "integer", "integer",
            ])
        #expect(JSONValue.isBoolean(NSNumber(value: true)) && !JSONValue.isBoolean(NSNumber(value: 1)) && !JSONValue.isBoolean(NSNumber(value: 0)))
        #expect(throws: JSONValue.ConversionError.self) { try JSONValue(any: Date()) }

        let doc = try OpenAPIDocument.load()
        func violations(_ json: String, _ type: String) throws -> [String] {
            doc.validate(try Self.json(json), against: Schema(value: .object(["type": .string(type)])))
        }
        #expect(try violations("true", "integer") == ["$: expected integer, got boolean"])
        #expect(try violations("false", "number") == ["$: expected number, got boolean"])
        #expect(try violations("1", "boolean") == ["$: expected boolean, got integer"])
        #expect(try violations("0", "boolean") == ["$: expected boolean, got integer"])
        #expect(try violations("1.5", "integer") == ["$: expected integer, got number"])
        #expect(try violations("true", "boolean") == [])
        #expect(try violations("1", "integer") == [])
        #expect(try violations("1.0", "integer") == [])
        #expect(try violations("1", "number") == [])
        #expect(try violations("\"1\"", "integer") == ["$: expected integer, got string"])
        #expect(try violations("null", "string") == ["$: expected string, got null"])
        #expect(doc.validate(true, against: Schema(value: .object(["type": .string("integer")]))) == ["$: expected integer, got boolean"])
        #expect(doc.validate(1, against: Schema(value: .object(["type": .string("boolean")]))) == ["$: expected boolean, got integer"])
        // Type lists (OpenAPI 3.1), `enum` and `const` compare booleans and numbers by kind too.
        let nullable = Schema(value: .object(["type": .array([.string("string"), .string("null")])]))
        #expect(doc.validate(NSNull(), against: nullable) == [])
        #expect(doc.validate(try Self.json("3"), against: nullable) == ["$: expected string or null, got integer"])
        #expect(doc.validate(try Self.json("1"), against: Schema(value: .object(["const": .bool(true)]))).count == 1)
        #expect(doc.validate(try Self.json("true"), against: Schema(value: .object(["enum": .array([.number(1), .number(0)])]))).count == 1)
    }

    @Test func dateTimesAreChecked() throws {
        for valid in ["2025-11-29T20:34:00Z", "2025-11-29T20:34:00.123Z", "2024-02-29T00:00:00+01:00", "2025-11-29t23:59:60-05:30"] {
            #expect(OpenAPIDocument.isDateTime(valid), "\(valid)")
        }
        for invalid in [
            "2025-11-29", "2025-11-29 20:34:00Z", "2025-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2025-11-29T24:00:00Z",
            "2025-11-29T20:34:00", "2025-11-29T20:34:00.Z", "2025-11-29T20:34:00+0100", "yesterday", "",
        ] {
            #expect(!OpenAPIDocument.isDateTime(invalid), "\(invalid)")
        }
        let doc = try OpenAPIDocument.load()
        let schema = Schema(value: .object(["type": .string("string"), "format": .string("date-time")]))
        #expect(doc.validate("2025-11-29T20:34:00.123Z", against: schema) == [])
        #expect(doc.validate("1732912440", against: schema) == [#"$: "1732912440" is not an ISO 8601 date-time"#])
    }

    // MARK: - The analysis envelope

    @Test func validAnalysisEnvelopeConforms() throws {
        let doc = try OpenAPIDocument.load()
        for route in ["/v1/analyze", "/v1/emotion", "/v1/reasoning", "/v1/values", "/v1/theory-of-mind", "/v1/narrative"] {
            #expect(doc.validateResponse(method: "POST", path: route, status: 200, body: Data(Self.analysis.utf8)) == [], "\(route)")
        }
        let degraded = Self.analysis
            .replacingOccurrences(of: #""degraded": false"#, with: #""degraded": true, "degraded_reason": "deadline""#)
        #expect(doc.validateResponse(method: "POST", path: "/v1/analyze", status: 200, body: Data(degraded.utf8)) == [])
    }

    @Test func mutatedAnalysisEnvelopesAreRejected() throws {
        let doc = try OpenAPIDocument.load()
        let schema = try #require(doc.responseSchema(method: "POST", path: "/v1/analyze", status: 200))
        let base = try Self.json(Self.analysis)
        #expect(doc.validate(base, against: schema) == [])
        let mutations: [(path: [String], value: Any?, expected: String)] = [
            (["model_version"], nil, #"$: missing required key "model_version""#),
            (["results", "emotion", "sentences", "0", "dominant"], nil, #"$.results.emotion.sentences[0]: missing required key "dominant""#),
            (["extra"], "x", #"$: unexpected key "extra""#),
            (["requestId"], "x", #"$: unexpected key "requestId""#),
            (["results", "theory-of-mind"], [String: Any](), #"$.results: unexpected key "theory-of-mind""#),
            (["results", "emotion", "emotions", "love"], 0.5, #"$.results.emotion.emotions: unexpected key "love""#),
            (["cache", "summary"], "miss", #"$.cache: unexpected key "summary""#),
            (["results", "emotion", "valence"], "high", "$.results.emotion.valence: expected number, got string"),
            (["results", "narrative", "characters"], "i", "$.results.narrative.characters: expected array, got string"),
            (["timings_ms", "total"], "1ms", "$.timings_ms.total: expected number, got string"),
            (["cache", "emotion"], "l3", #"$.cache.emotion: "l3" is not one of "l1", "l2", "fallback", "miss""#),
            (["results", "reasoning", "chains", "0", "relation"], "because", #"$.results.reasoning.chains[0].relation: "because" is not one of"#),
            (["results", "narrative", "perspective"], "second_person", #"$.results.narrative.perspective: "second_person" is not one of"#),
            (["results", "narrative", "tense"], "past_perfect", #"$.results.narrative.tense: "past_perfect" is not one of"#),
            (["results", "reasoning", "depth"], true, "$.results.reasoning.depth: expected integer, got boolean"),
            (
                ["results", "theory_of_mind", "self_references"], NSNumber(value: true),
                "$.results.theory_of_mind.self_references: expected integer, got boolean"
            ),
            (["results", "theory_of_mind", "self_references"], 1.5, "$.results.theory_of_mind.self_references: expected integer, got number"),
            (["cached"], 1, "$.cached: expected boolean, got integer"),
            (
                ["results", "theory_of_mind", "agents", "0", "states", "0", "negated"], NSNumber(value: 0),
                "$.results.theory_of_mind.agents[0].states[0].negated: expected boolean, got integer"
            ),
            (["results", "emotion", "arousal"], 1.5, "$.results.emotion.arousal: 1.5 is greater than the maximum 1"),
            (["results", "values", "hierarchy", "9"], nil, "$.results.values.hierarchy: 9 items, at least 10 expected"),
            (["results", "narrative", "arc", "staging"], nil, #"$.results.narrative.arc: missing required key "staging""#),
            (["degraded"], true, "$: matches none of the 2 oneOf alternatives"),
            (["degraded_reason"], "deadline", "$: matches none of the 2 oneOf alternatives"),
        ]
        for m in mutations {
            let mutated = try #require(Self.setting(base, m.path[...], to: m.value))
            let violations = doc.validate(mutated, against: schema)
            #expect(violations.contains { $0.hasPrefix(m.expected) }, "\(m.path): \(violations)")
        }
        // The same through JSON text, so the values are JSONSerialization's NSNumbers.
        let textMutations = [
            (#""cached": false"#, #""cached": 1"#, "$.cached: expected boolean, got integer"),
            (#""depth": 1"#, #""depth": true"#, "$.results.reasoning.depth: expected integer, got boolean"),
            (#""negated": false"#, #""negated": 0"#, "$.results.theory_of_mind.agents[0].states[0].negated: expected boolean, got integer"),
            (#""order": 1"#, #""order": 1.25"#, "$.results.narrative.events[1].order: expected integer, got number"),
        ]
        for (from, to, expected) in textMutations {
            #expect(Self.analysis.contains(from))
            let body = Data(Self.analysis.replacingOccurrences(of: from, with: to).utf8)
            #expect(doc.validateResponse(method: "POST", path: "/v1/analyze", status: 200, body: body) == [expected], "\(to)")
        }
    }

    // MARK: - Errors

    @Test func errorBodiesConformForEveryDocumentedErrorStatus() throws {
        let doc = try OpenAPIDocument.load()
        var checked = 0
        for op in doc.operations where op.path != "/ready" {
            let path = Self.concrete(op.path)
            for status in op.statuses.compactMap(Int.init) where status >= 400 {
                let codes = Self.codes.filter { $0.status == status }
                #expect(!codes.isEmpty, "\(op.method) \(op.path) documents \(status), which no error code has")
                for code in codes {
                    var error: [String: Any] = ["code": code.rawValue, "message": "something went wrong", "request_id": "r-1"]
                    if code == .validationFailed { error["field"] = "text" }
                    if code == .idempotencyKeyReused { error["field"] = "Idempotency-Key" }
                    let body = try Self.data(["error": error])
                    #expect(
                        doc.validateResponse(method: op.method, path: path, status: status, body: body) == [],
                        "\(op.method) \(op.path) \(status) \(code.rawValue)")
                    checked += 1
                }
                // A code of another status, a missing request id, an extra key: all rejected.
                let other = try #require(Self.codes.first { $0.status != status })
                let wrongCode = try Self.data(["error": ["code": other.rawValue, "message": "m", "request_id": "r"]])
                #expect(!doc.validateResponse(method: op.method, path: path, status: status, body: wrongCode).isEmpty, "\(op.path) \(status) \(other.rawValue)")
                let noID = try Self.data(["error": ["code": codes[0].rawValue, "message": "m"]])
                #expect(
                    doc.validateResponse(method: op.method, path: path, status: status, body: noID).contains(#"$.error: missing required key "request_id""#))
                let extra = try Self.data(["error": ["code": codes[0].rawValue, "message": "m", "request_id": "r", "field": "text"], "status": status])
                #expect(doc.validateResponse(method: op.method, path: path, status: status, body: extra).contains(#"$: unexpected key "status""#))
            }
        }
        #expect(checked > 100)
        // validation_failed names its field.
        let noField = try Self.data(["error": ["code": "validation_failed", "message": "m", "request_id": "r"]])
        #expect(!doc.validateResponse(method: "POST", path: "/v1/analyze", status: 422, body: noField).isEmpty)
        // The service's own error type encodes to a conforming body.
        let encoded = try JSONEncoder().encode(["error": APIError(.notFound, "no such entry", requestID: "r-2")])
        #expect(doc.validateResponse(method: "DELETE", path: "/v1/entries/e-1", status: 404, body: encoded) == [])
        // The readiness probe's 503 is not an error body.
        let notReady = Data(#"{"status": "draining", "instance_id": "i-1", "reason": "shutting down"}"#.utf8)
        #expect(doc.validateResponse(method: "GET", path: "/ready", status: 503, body: notReady) == [])
        #expect(!doc.validateResponse(method: "GET", path: "/ready", status: 503, body: Data(#"{"status": "ready", "instance_id": "i-1"}"#.utf8)).isEmpty)
    }

    @Test func undocumentedStatusesPathsAndBodiesAreViolations() throws {
        let doc = try OpenAPIDocument.load()
        let body = Data(Self.analysis.utf8)
        #expect(doc.validateResponse(method: "POST", path: "/v1/analyze", status: 404, body: body) == ["no schema for POST /v1/analyze 404"])
        #expect(doc.validateResponse(method: "POST", path: "/v1/analyze", status: 201, body: body) == ["no schema for POST /v1/analyze 201"])
        #expect(doc.validateResponse(method: "GET", path: "/v1/analyze", status: 200, body: body) == ["no schema for GET /v1/analyze 200"])
        #expect(doc.validateResponse(method: "GET", path: "/v2/analyze", status: 200, body: body) == ["no schema for GET /v2/analyze 200"])
        #expect(doc.validateResponse(method: "POST", path: "/v1/analyze", status: 200, body: Data("not json".utf8)) == ["$: body is not JSON (not json)"])
        let metrics = "# HELP soma_requests_total Requests.\n# TYPE soma_requests_total counter\nsoma_requests_total 3\n"
        #expect(doc.validateResponse(method: "GET", path: "/metrics", status: 200, body: Array(metrics.utf8)) == [])
    }

    @Test func responseHeadersAreChecked() throws {
        let doc = try OpenAPIDocument.load()
        let ok = ["x-request-id": "r-1", "RateLimit-Limit": "60", "ratelimit-remaining": "59", "RateLimit-Reset": "30"]
        #expect(doc.validateHeaders(method: "POST", path: "/v1/analyze", status: 200, headers: ok) == [])
        var missing = ok
        missing["RateLimit-Limit"] = nil
        #expect(doc.validateHeaders(method: "POST", path: "/v1/analyze", status: 200, headers: missing) == ["header RateLimit-Limit: missing"])
        var wrong = ok
        wrong["RateLimit-Reset"] = "soon"
        #expect(
            doc.validateHeaders(method: "POST", path: "/v1/analyze", status: 200, headers: wrong) == ["header RateLimit-Reset: expected integer, got string"])
        #expect(doc.validateHeaders(method: "POST", path: "/v1/analyze", status: 429, headers: ok) == ["header Retry-After: missing"])
        #expect(doc.validateHeaders(method: "POST", path: "/v1/analyze", status: 503, headers: ["X-Request-Id": "r", "Retry-After": "1"]) == [])
        #expect(doc.validateHeaders(method: "GET", path: "/health", status: 200, headers: [:]) == ["header X-Request-Id: missing"])
    }

    // MARK: - Batch and entries

    @Test func batchItemsAreEnvelopesOrErrors() throws {
        let doc = try OpenAPIDocument.load()
        func batch(_ items: String) -> Data {
            Data(#"{"request_id": "r", "user_id": "u", "model_version": "m", "items": [\#(items)]}"#.utf8)
        }
        #expect(doc.validateResponse(method: "POST", path: "/v1/analyze/batch", status: 200, body: batch("\(Self.analysis), \(Self.errorItem)")) == [])
        #expect(doc.validateResponse(method: "POST", path: "/v1/analyze/batch", status: 200, body: batch("")) == [])
        let empty = doc.validateResponse(method: "POST", path: "/v1/analyze/batch", status: 200, body: batch("{}"))
        #expect(empty.count == 1 && empty[0].hasPrefix("$.items[0]: matches none of the 2 oneOf alternatives"), "\(empty)")
        let both = Self.analysis.replacingOccurrences(
            of: #""degraded": false,"#, with: #""degraded": false, "error": {"code": "internal", "message": "m", "request_id": "r"},"#)
        #expect(!doc.validateResponse(method: "POST", path: "/v1/analyze/batch", status: 200, body: batch(both)).isEmpty)
        let badCode = Self.errorItem.replacingOccurrences(of: "validation_failed", with: "bad_thing")
        #expect(!doc.validateResponse(method: "POST", path: "/v1/analyze/batch", status: 200, body: batch(badCode)).isEmpty)
    }

    @Test func requestSchemasAcceptTheContractAndRejectMistakes() throws {
        let doc = try OpenAPIDocument.load()
        let analyze = try #require(doc.requestSchema(method: "POST", path: "/v1/analyze"))
        #expect(doc.validate(try Self.json(#"{"text": "hi"}"#), against: analyze) == [])
        #expect(doc.validate(try Self.json(#"{"text": "hi", "modules": ["emotion", "theory-of-mind", "theory_of_mind"]}"#), against: analyze) == [])
        #expect(doc.validate(try Self.json(#"{"text": ""}"#), against: analyze) == ["$.text: shorter than 1 characters (0)"])
        #expect(doc.validate(try Self.json(#"{"text": "hi", "modules": []}"#), against: analyze) == ["$.modules: 0 items, at least 1 expected"])
        #expect(doc.validate(try Self.json(#"{"text": "hi", "modules": ["mood"]}"#), against: analyze).count == 1)
        #expect(doc.validate(try Self.json(#"{"texts": "hi"}"#), against: analyze).count == 2)
        let batch = try #require(doc.requestSchema(method: "POST", path: "/v1/analyze/batch"))
        #expect(doc.validate(try Self.json(#"{"items": [{"text": "a"}, {"text": "b", "modules": ["values"]}], "modules": ["emotion"]}"#), against: batch) == [])
        #expect(doc.validate(try Self.json(#"{"items": []}"#), against: batch) == ["$.items: 0 items, at least 1 expected"])
        for route in ["/v1/emotion", "/v1/reasoning", "/v1/values", "/v1/theory-of-mind", "/v1/narrative", "/v1/entries"] {
            let schema = try #require(doc.requestSchema(method: "POST", path: route))
            #expect(doc.validate(try Self.json(#"{"text": "hi"}"#), against: schema) == [], "\(route)")
        }
        let warm = try #require(doc.requestSchema(method: "POST", path: "/admin/cache/warm"))
        #expect(doc.validate(try Self.json(#"{"texts": ["a"], "modules": ["narrative"]}"#), against: warm) == [])
        #expect(doc.validate(try Self.json("{}"), against: warm) == [])
    }

    @Test func entriesProfileAndOperationsResponsesConform() throws {
        let doc = try OpenAPIDocument.load()
        let results = String(decoding: Fixtures.engine.analyze("We moved to Lisbon last year because I wanted a change.").json(), as: UTF8.self)
        let entry = #"{"id": "0193c4e2-7b1a", "created_at": "2025-11-29T20:34:00.123Z", "text": "We moved.", "model_version": "m1", "results": \#(results)}"#
        func check(_ method: String, _ path: String, _ status: Int, _ body: String) {
            let violations = doc.validateResponse(method: method, path: path, status: status, body: Data(body.utf8))
            #expect(violations == [], "\(method) \(path) \(status)")
        }
        check("POST", "/v1/entries", 201, #"{"request_id": "r", "user_id": "u", "persisted": "stored", "entry": \#(entry)}"#)
        check("POST", "/v1/entries", 202, #"{"request_id": "r", "user_id": "u", "persisted": "queued", "entry": \#(entry)}"#)
        #expect(
            !doc.validateResponse(
                method: "POST", path: "/v1/entries", status: 201,
                body: Data(#"{"request_id": "r", "user_id": "u", "persisted": "queued", "entry": \#(entry)}"#.utf8)
            ).isEmpty)
        check("GET", "/v1/entries?limit=2", 200, #"{"request_id": "r", "user_id": "u", "entries": [\#(entry)], "next_cursor": "c2"}"#)
        check("GET", "/v1/entries", 200, #"{"request_id": "r", "user_id": "u", "entries": [], "next_cursor": null}"#)
        #expect(
            !doc.validateResponse(method: "GET", path: "/v1/entries", status: 200, body: Data(#"{"request_id": "r", "user_id": "u", "entries": []}"#.utf8))
                .isEmpty)
        let badDate = entry.replacingOccurrences(of: "2025-11-29T20:34:00.123Z", with: "29/11/2025")
        #expect(
            doc.validateResponse(
                method: "GET", path: "/v1/entries", status: 200,
                body: Data(#"{"request_id": "r", "user_id": "u", "entries": [\#(badDate)], "next_cursor": null}"#.utf8))
                == [#"$.entries[0].created_at: "29/11/2025" is not an ISO 8601 date-time"#])
        check("DELETE", "/v1/entries/0193c4e2", 200, #"{"request_id": "r", "user_id": "u", "id": "0193c4e2", "deleted": true}"#)
        #expect(
            !doc.validateResponse(
                method: "DELETE", path: "/v1/entries/0193c4e2", status: 200,
                body: Data(#"{"request_id": "r", "user_id": "u", "id": "0193c4e2", "deleted": false}"#.utf8)
            ).isEmpty)
        check("DELETE", "/v1/user", 200, #"{"request_id": "r", "user_id": "u", "erased": {"entries": 3, "profiles": 1, "cache_entries": 0}}"#)
        check(
            "GET", "/health", 200,
            #"{"status": "ok", "instance_id": "i-1", "version": "1.0.0", "model_version": "m1", "uptime_seconds": 12.5, "draining": false, "dependencies": {"store": {"kind": "sqlite", "state": "up"}}}"#
        )
        check("GET", "/ready", 200, #"{"status": "ready", "instance_id": "i-1"}"#)
        let model = #"{"module": "emotion", "loaded": true, "loading": false, "in_use": 0, "bytes": 48213, "loads": 1, "unloads": 0, "load_failures": 0}"#
        check("GET", "/admin/models", 200, #"{"request_id": "r", "models": [\#(model)]}"#)
        check("POST", "/admin/models/emotion/load", 200, #"{"request_id": "r", "changed": true, "model": \#(model)}"#)
        check("POST", "/admin/models/emotion/unload", 200, #"{"request_id": "r", "changed": false, "model": \#(model)}"#)
        check("POST", "/admin/init-schema", 200, #"{"request_id": "r", "schema": "ok"}"#)
        check("POST", "/admin/cache/warm", 200, #"{"request_id": "r", "texts": 10, "entries": 50, "skipped": 0, "users": 0}"#)
        let badModel = model.replacingOccurrences(of: #""bytes": 48213"#, with: #""bytes": "48213""#)
        #expect(
            doc.validateResponse(method: "GET", path: "/admin/models", status: 200, body: Data(#"{"request_id": "r", "models": [\#(badModel)]}"#.utf8))
                == ["$.models[0].bytes: expected integer, got string"])
    }

    @Test func profilesFromTheBuilderConform() throws {
        let doc = try OpenAPIDocument.load()
        let texts = [
            "I was so happy because my sister finally came home, but I worry she will leave again.",
            "My father said we would win, so I believed him. Tomorrow we will try again.",
            "I value honesty and tradition; my family matters more than money.",
            "She walked into the room. He looked at her and knew something was wrong.",
        ]
        let day = 86_400.0
        let history = texts.enumerated().map { (i, text) in
            (results: Fixtures.engine.analyze(text), createdAt: Date(timeIntervalSince1970: 1_764_000_000 + Double(i) * day))
        }
        for profile in [ProfileBuilder().build(from: history), ProfileBuilder().build(from: Array(history.prefix(1))), UserProfile.empty] {
            let json = String(decoding: profile.json(), as: UTF8.self)
            let body = #"{"request_id": "r", "user_id": "u", "cached": false, "updated_at": "2025-11-29T20:34:00.123Z", "profile": \#(json)}"#
            #expect(doc.validateResponse(method: "GET", path: "/v1/profile", status: 200, body: Data(body.utf8)) == [], "\(json)")
        }
        let profile = try #require(doc.schema(named: "UserProfile"))
        let base = try Self.json(String(decoding: ProfileBuilder().build(from: history).json(), as: UTF8.self))
        let mutations: [(path: [String], value: Any?, expected: String)] = [
            (["emotion_baseline", "dominant_counts", "bliss"], 1, #"$.emotion_baseline.dominant_counts: unexpected key "bliss""#),
            (["values", "hierarchy", "0", "entries"], 0.5, "$.values.hierarchy[0].entries: expected integer, got number"),
            (["narrative", "tense", "past"], true, "$.narrative.tense.past: expected integer, got boolean"),
            (["emotion_baseline", "emotions", "joy"], nil, #"$.emotion_baseline.emotions: missing required key "joy""#),
        ]
        for (path, value, expected) in mutations {
            let violations = doc.validate(try #require(Self.setting(base, path[...], to: value)), against: profile)
            #expect(violations == [expected], "\(path)")
        }
    }

    @Test func documentExamplesConform() throws {
        let doc = try OpenAPIDocument.load()
        var examples = 0
        func walk(_ value: JSONValue, _ location: String) {
            guard case .object(let o) = value else {
                if case .array(let a) = value { for (i, v) in a.enumerated() { walk(v, "\(location)[\(i)]") } }
                return
            }
            if let example = o["example"], let schema = o["schema"] {
                #expect(doc.validate(example, against: Schema(value: schema)) == [], "example at \(location)")
                examples += 1
            }
            for (k, v) in o where k != "example" { walk(v, "\(location)/\(k)") }
        }
        walk(doc.root, "#")
        #expect(examples >= 5)
    }

    // MARK: - The engine's real output

    @Test func engineResultsMatchTheModuleSchemas() throws {
        let doc = try OpenAPIDocument.load()
        let schema = try #require(doc.schema(named: "AnalysisResults"))
        let results = Fixtures.engine.analyze("I was so happy because my sister finally came home, but I worry she will leave again.")
        let json = try JSONSerialization.jsonObject(with: Data(results.json()))
        let object = try #require(json as? [String: Any])
        #expect(Set(object.keys) == ["emotion", "reasoning", "values", "theory_of_mind", "narrative"])
        #expect(doc.validate(json, against: schema) == [])

        // Served inside the envelope.
        let envelope = try #require(Self.setting(try Self.json(Self.analysis), ["results"], to: json))
        #expect(doc.validate(envelope, against: try #require(doc.responseSchema(method: "POST", path: "/v1/analyze", status: 200))) == [])
    }

    @Test func engineResultsOverTheEvaluationTextsConform() throws {
        let doc = try OpenAPIDocument.load()
        let schema = try #require(doc.schema(named: "AnalysisResults"))
        var texts = [
            "", "!!!", "I think she believes he wants to leave.", "Tomorrow we will fly to Lisbon. Before that, we had stopped for coffee.",
            "If it rains, then the match is off; therefore we stay home. Clearly the data shows it.",
        ]
        for m in Module.allCases { texts += try EvaluationSet.load(m, from: Fixtures.eval).items.prefix(60).map(\.text) }
        var seen = (chains: 0, states: 0, events: 0, times: 0, evidence: 0)
        for text in texts {
            let results = Fixtures.engine.analyze(text)
            let violations = doc.validate(try JSONSerialization.jsonObject(with: Data(results.json())), against: schema)
            #expect(violations == [], "\(text)")
            seen.chains += results.reasoning?.chains.count ?? 0
            seen.states += results.theoryOfMind?.agents.reduce(0) { $0 + $1.states.count } ?? 0
            seen.events += results.narrative?.events.count ?? 0
            seen.times += results.narrative?.events.filter { $0.time != nil }.count ?? 0
            seen.evidence += results.values?.hierarchy.reduce(0) { $0 + $1.evidence.count } ?? 0
        }
        // The texts reach every nested shape of the schemas, so they are all checked.
        #expect(seen.chains > 0 && seen.states > 0 && seen.events > 0 && seen.times > 0 && seen.evidence > 0, "\(seen)")
        for module in Module.allCases {
            let single = Fixtures.engine.analyze("My father said we would win, so I believed him.", modules: [module])
            let json = try JSONSerialization.jsonObject(with: Data(single.json()))
            #expect((json as? [String: Any])?.keys.sorted() == [module.rawValue])
            #expect(doc.validate(json, against: schema) == [], "\(module)")
        }
    }
}
