// Over 500 lines on purpose: a self-contained validator (JSON values, $ref resolution, the JSON
// Schema 2020-12 keywords openapi.yaml uses); its parts are only meaningful together.
import Foundation
import Yams

// A small OpenAPI 3.1 response validator for tests: loads `openapi.yaml` from the repository root,
// finds the schema of a response by method, concrete path and status, and checks JSON against it
// (the JSON Schema 2020-12 subset the document uses).

/// A JSON (or YAML) value. `Sendable`, unlike the `Any` that `JSONSerialization` and Yams return.
enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// Every number; an integer is a finite number with no fractional part.
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    struct ConversionError: Error, CustomStringConvertible {
        var path: String
        var typeName: String
        var description: String { "\(path): \(typeName) is not a JSON value" }
    }

    /// Converts what `JSONSerialization`, Yams or a Swift literal produced.
    ///
    /// Booleans and numbers are told apart reliably: a native `Bool` is a boolean and a native
    /// integer or floating-point value a number; an `NSNumber` (what `JSONSerialization` returns,
    /// on Linux as on Darwin) is a boolean only when it is Foundation's boolean number, never
    /// merely because it holds 0 or 1 (`NSNumber(1) as? Bool` succeeds on Linux, so that cast is
    /// not used).
    init(any value: Any) throws {
        self = try Self.convert(value, path: "$")
    }

    private static func convert(_ value: Any, path: String) throws -> JSONValue {
        if value is NSNull { return .null }
        let valueType = type(of: value)
        if valueType == Bool.self, let b = value as? Bool { return .bool(b) }
        if valueType is NSNumber.Type, let n = value as? NSNumber { return number(n) }
        if let s = value as? String { return .string(s) }
        if let i = value as? any BinaryInteger { return .number(Double(i)) }
        if let x = value as? any BinaryFloatingPoint { return .number(Double(x)) }
        if let list = value as? [Any] {
            return .array(try list.enumerated().map { try convert($1, path: "\(path)[\($0)]") })
        }
        if let dict = value as? [String: Any] {
            var object: [String: JSONValue] = [:]
            for (k, v) in dict { object[k] = try convert(v, path: pathAppending(path, k)) }
            return .object(object)
        }
        if let dict = value as? [AnyHashable: Any] {
            // Yams maps: keys may be Int or Bool when unquoted in YAML (`200:`).
            var object: [String: JSONValue] = [:]
            for (k, v) in dict {
                let key = "\(k.base)"
                object[key] = try convert(v, path: pathAppending(path, key))
            }
            return .object(object)
        }
        throw ConversionError(path: path, typeName: "\(valueType)")
    }

    /// Whether an `NSNumber` is Foundation's boolean (`__NSCFBoolean`, objCType "c" or "B"),
    /// as opposed to a number that happens to be 0 or 1.
    static func isBoolean(_ n: NSNumber) -> Bool {
        if String(describing: type(of: n)).contains("Boolean") { return true }
        let objCType = String(cString: n.objCType)
        return objCType == "c" || objCType == "B"
    }

    private static func number(_ n: NSNumber) -> JSONValue {
        isBoolean(n) ? .bool(n.boolValue) : .number(n.doubleValue)
    }

    /// The JSON type name, `integer` for a number without a fractional part.
    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number(let x): Self.isInteger(x) ? "integer" : "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    static func isInteger(_ x: Double) -> Bool { x.isFinite && x.rounded(.towardZero) == x }

    /// A short rendering for messages.
    var brief: String {
        switch self {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .number(let x): Self.isInteger(x) && abs(x) < 1e15 ? "\(Int64(x))" : "\(x)"
        case .string(let s): s.count > 40 ? "\"\(s.prefix(40))…\"" : "\"\(s)\""
        case .array(let a): "[\(a.count) items]"
        case .object(let o): "{\(o.keys.sorted().prefix(4).joined(separator: ", "))\(o.count > 4 ? ", …" : "")}"
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var object: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    var array: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    static func pathAppending(_ path: String, _ key: String) -> String {
        let plain =
            !key.isEmpty
            && key.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
            }
        return plain ? "\(path).\(key)" : "\(path)[\"\(key)\"]"
    }
}

/// A JSON Schema inside the document (`$ref`s resolve against the document it came from).
struct Schema: Sendable, Equatable {
    var value: JSONValue
}

/// `openapi.yaml`, loaded.
struct OpenAPIDocument: Sendable {
    struct LoadError: Error, CustomStringConvertible {
        var description: String
    }

    /// One operation of the document.
    struct Operation: Sendable, Equatable, CustomStringConvertible {
        var method: String
        var path: String
        var operationID: String?
        /// Documented statuses (`"200"`, `"4XX"`, `"default"`), sorted.
        var statuses: [String]
        var description: String { "\(method) \(path) \(statuses.joined(separator: " "))" }
    }

    /// What a response documents: its body (if any) and its headers.
    struct ResponseSpec: Sendable {
        var mediaType: String?
        var schema: Schema?
        /// Header name → whether it is required, and its schema.
        var headers: [String: (required: Bool, schema: Schema?)]
    }

    static let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]

    /// The repository's `openapi.yaml` (this file is Tests/Unit/Support/OpenAPIValidator.swift).
    static let defaultURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("openapi.yaml")

    private static let standard = Result { try OpenAPIDocument(contentsOf: defaultURL) }

    /// The repository's document, loaded once per test run.
    static func load() throws -> OpenAPIDocument { try standard.get() }

    let root: JSONValue

    init(contentsOf url: URL) throws {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw LoadError(description: "cannot read \(url.path): \(error)")
        }
        try self.init(yaml: text)
    }

    init(yaml: String) throws {
        let any: Any?
        do { any = try Yams.load(yaml: yaml) } catch { throw LoadError(description: "not YAML: \(error)") }
        guard let any else { throw LoadError(description: "empty document") }
        // A YAML timestamp (an unquoted date) loads as `Date` and fails here: quote it.
        root = try JSONValue(any: any)
        guard root["openapi"]?.string?.hasPrefix("3.") == true else {
            throw LoadError(description: "not an OpenAPI 3 document (openapi: \(root["openapi"]?.brief ?? "missing"))")
        }
        guard root["paths"]?.object != nil else { throw LoadError(description: "no paths") }
    }

    // MARK: - Operations and paths

    var paths: [String: JSONValue] { root["paths"]?.object ?? [:] }

    /// Every operation, sorted by path then method.
    var operations: [Operation] {
        var result: [Operation] = []
        for path in paths.keys.sorted() {
            guard let item = paths[path].map(resolved) else { continue }
            for method in Self.methods {
                guard let op = item[method] else { continue }
                let statuses = (op["responses"]?.object?.keys).map { Array($0).sorted() } ?? []
                result.append(Operation(method: method.uppercased(), path: path, operationID: op["operationId"]?.string, statuses: statuses))
            }
        }
        return result
    }

    /// The path template a concrete path (query string allowed) is served by: literal segments
    /// match exactly, `{name}` matches one non-empty segment; where several templates match, the
    /// one with a literal segment earliest wins (`/v1/entries/export` over `/v1/entries/{id}`).
    func template(for concretePath: String) -> String? {
        let pathOnly = concretePath.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        let segments = pathOnly.split(separator: "/", omittingEmptySubsequences: false)
        var best: (template: String, rank: [Bool])?
        for template in paths.keys.sorted() {
            let parts = template.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == segments.count else { continue }
            var rank: [Bool] = []
            var matches = true
            for (part, segment) in zip(parts, segments) {
                if part.hasPrefix("{") && part.hasSuffix("}") {
                    if segment.isEmpty { matches = false; break }
                    rank.append(false)
                } else {
                    if part != segment { matches = false; break }
                    rank.append(true)
                }
            }
            guard matches else { continue }
            if let current = best, !Self.ranksHigher(rank, current.rank) { continue }
            best = (template, rank)
        }
        return best?.template
    }

    /// Literal (`true`) beats parameter at the first position where the two differ.
    private static func ranksHigher(_ a: [Bool], _ b: [Bool]) -> Bool {
        for (x, y) in zip(a, b) where x != y { return x }
        return false
    }

    /// The operation object of a method on a concrete path.
    func operation(method: String, path: String) -> JSONValue? {
        guard let template = template(for: path), let item = paths[template].map(resolved) else { return nil }
        return item[method.lowercased()]
    }

    /// The documented response of a status: exact, else `4XX`-style range, else `default`.
    func response(method: String, path: String, status: Int) -> ResponseSpec? {
        guard let responses = operation(method: method, path: path)?["responses"]?.object else { return nil }
        guard let raw = responses["\(status)"] ?? responses["\(status / 100)XX"] ?? responses["\(status / 100)xx"] ?? responses["default"]
        else { return nil }
        let response = resolved(raw)
        var spec = ResponseSpec(mediaType: nil, schema: nil, headers: [:])
        if let content = response["content"]?.object, let mediaType = Self.preferredMediaType(content.keys) {
            spec.mediaType = mediaType
            spec.schema = content[mediaType]?["schema"].map(Schema.init)
        }
        for (name, header) in response["headers"]?.object ?? [:] {
            let h = resolved(header)
            var required = false
            if case .bool(true) = h["required"] { required = true }
            spec.headers[name] = (required, h["schema"].map(Schema.init))
        }
        return spec
    }

    /// The schema of a response body; `nil` when the status is not documented (no exact status,
    /// no range, no `default`) or the response has no body.
    func responseSchema(method: String, path: String, status: Int) -> Schema? {
        response(method: method, path: path, status: status)?.schema
    }

    /// The schema of a request body.
    func requestSchema(method: String, path: String) -> Schema? {
        guard let body = operation(method: method, path: path)?["requestBody"].map(resolved),
            let content = body["content"]?.object, let mediaType = Self.preferredMediaType(content.keys)
        else { return nil }
        return content[mediaType]?["schema"].map(Schema.init)
    }

    /// A named schema of `components/schemas`.
    func schema(named name: String) -> Schema? {
        root["components"]?["schemas"]?[name].map(Schema.init)
    }

    private static func preferredMediaType(_ types: some Collection<String>) -> String? {
        let sorted = types.sorted()
        return sorted.first { isJSON($0) } ?? sorted.first
    }

    static func isJSON(_ mediaType: String) -> Bool {
        let base = mediaType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return base == "application/json" || base.hasSuffix("+json")
    }

    // MARK: - References

    /// Follows `$ref` (a local JSON pointer) until a value without one.
    func resolved(_ value: JSONValue) -> JSONValue {
        var current = value
        for _ in 0..<32 {
            guard let ref = current["$ref"]?.string, let target = resolve(ref: ref) else { return current }
            current = target
        }
        return current
    }

    /// The value a local reference (`#/components/schemas/Name`) points at.
    func resolve(ref: String) -> JSONValue? {
        guard ref.hasPrefix("#") else { return nil }
        var current = root
        for raw in ref.dropFirst().split(separator: "/", omittingEmptySubsequences: true) {
            let token = (String(raw).removingPercentEncoding ?? String(raw))
                .replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch current {
            case .object(let o):
                guard let next = o[token] else { return nil }
                current = next
            case .array(let a):
                guard let i = Int(token), a.indices.contains(i) else { return nil }
                current = a[i]
            default:
                return nil
            }
        }
        return current
    }

    /// Every `$ref` in the document that does not resolve.
    func unresolvedReferences() -> [String] {
        var missing: [String] = []
        func walk(_ v: JSONValue) {
            switch v {
            case .object(let o):
                if let ref = o["$ref"]?.string, resolve(ref: ref) == nil { missing.append(ref) }
                o.values.forEach(walk)
            case .array(let a): a.forEach(walk)
            default: break
            }
        }
        walk(root)
        return missing.sorted()
    }

    // MARK: - Validation

    /// The violations of `json` (from `JSONSerialization`, or Swift literals) against `schema`,
    /// each as "JSON path: what is wrong"; empty when it conforms.
    func validate(_ json: Any, against schema: Schema) -> [String] {
        do {
            return validate(try JSONValue(any: json), against: schema)
        } catch {
            return ["\(error)"]
        }
    }

    func validate(_ value: JSONValue, against schema: Schema) -> [String] {
        var out: [String] = []
        check(value, schema.value, path: "$", depth: 0, into: &out)
        return out
    }

    /// Parses `body` as JSON and validates it against the documented response; an undocumented
    /// status (or path, or method) is itself a violation. A non-JSON documented media type (the
    /// Prometheus text of /metrics) is checked as a UTF-8 string; a response documented without
    /// content must have an empty body.
    func validateResponse(method: String, path: String, status: Int, body: some Sequence<UInt8>) -> [String] {
        let bytes = Array(body)
        guard let spec = response(method: method, path: path, status: status) else {
            return ["no schema for \(method.uppercased()) \(path) \(status)"]
        }
        guard let mediaType = spec.mediaType else {
            return bytes.isEmpty ? [] : ["\(method.uppercased()) \(path) \(status): documented without a body, got \(bytes.count) bytes"]
        }
        guard let schema = spec.schema else { return [] }
        if !Self.isJSON(mediaType) {
            guard let text = String(validating: bytes, as: UTF8.self) else { return ["$: body is not UTF-8 (\(mediaType))"] }
            return validate(JSONValue.string(text), against: schema)
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            let preview = String(decoding: bytes.prefix(120), as: UTF8.self)
            return ["$: body is not JSON (\(preview))"]
        }
        return validate(json, against: schema)
    }

    /// Checks that the headers a response documents as required are present (names compare
    /// case-insensitively) and that integer headers hold integers.
    func validateHeaders(method: String, path: String, status: Int, headers: [String: String]) -> [String] {
        guard let spec = response(method: method, path: path, status: status) else {
            return ["no schema for \(method.uppercased()) \(path) \(status)"]
        }
        var lowered: [String: String] = [:]
        for (k, v) in headers { lowered[k.lowercased()] = v }
        var out: [String] = []
        for name in spec.headers.keys.sorted() {
            let (required, schema) = spec.headers[name]!
            guard let value = lowered[name.lowercased()] else {
                if required { out.append("header \(name): missing") }
                continue
            }
            guard let schema else { continue }
            let type = resolved(schema.value)["type"]?.string
            let parsed: JSONValue = (type == "integer" || type == "number") ? (Double(value).map(JSONValue.number) ?? .string(value)) : .string(value)
            for violation in validate(parsed, against: schema) {
                out.append("header \(name): " + violation.replacingOccurrences(of: "$: ", with: ""))
            }
        }
        return out
    }

    private static let maxDepth = 200

    private func check(_ v: JSONValue, _ s: JSONValue, path: String, depth: Int, into out: inout [String]) {
        guard depth < Self.maxDepth else {
            out.append("\(path): schema nesting deeper than \(Self.maxDepth) (a $ref cycle?)")
            return
        }
        let schema: [String: JSONValue]
        switch s {
        case .bool(true): return
        case .bool(false):
            out.append("\(path): not allowed here (\(v.brief))")
            return
        case .object(let o): schema = o
        default: return
        }

        if let ref = schema["$ref"]?.string {
            if let target = resolve(ref: ref) {
                check(v, target, path: path, depth: depth + 1, into: &out)
            } else {
                out.append("\(path): $ref \(ref) does not resolve")
            }
        }

        if let type = schema["type"] {
            let names: [String]
            switch type {
            case .string(let t): names = [t]
            case .array(let a): names = a.compactMap(\.string)
            default: names = []
            }
            if !names.isEmpty && !names.contains(where: { Self.hasType(v, $0) }) {
                out.append("\(path): expected \(names.joined(separator: " or ")), got \(v.kind)")
                return  // the other keywords would only repeat the mismatch
            }
        }

        if let options = schema["enum"], case .array(let list) = options, !list.contains(v) {
            out.append("\(path): \(v.brief) is not one of \(list.map(\.brief).joined(separator: ", "))")
        }
        if let constant = schema["const"], constant != v {
            out.append("\(path): expected \(constant.brief), got \(v.brief)")
        }

        switch v {
        case .string(let string):
            let length = string.unicodeScalars.count
            if case .number(let min)? = schema["minLength"], Double(length) < min {
                out.append("\(path): shorter than \(Int(min)) characters (\(length))")
            }
            if case .number(let max)? = schema["maxLength"], Double(length) > max {
                out.append("\(path): longer than \(Int(max)) characters (\(length))")
            }
            if schema["format"]?.string == "date-time", !Self.isDateTime(string) {
                out.append("\(path): \(v.brief) is not an ISO 8601 date-time")
            }
        case .number(let x):
            if case .number(let min)? = schema["minimum"], x < min {
                out.append("\(path): \(v.brief) is less than the minimum \(JSONValue.number(min).brief)")
            }
            if case .number(let max)? = schema["maximum"], x > max {
                out.append("\(path): \(v.brief) is greater than the maximum \(JSONValue.number(max).brief)")
            }
            if case .number(let min)? = schema["exclusiveMinimum"], x <= min {
                out.append("\(path): \(v.brief) is not greater than \(JSONValue.number(min).brief)")
            }
            if case .number(let max)? = schema["exclusiveMaximum"], x >= max {
                out.append("\(path): \(v.brief) is not less than \(JSONValue.number(max).brief)")
            }
        case .array(let items):
            if case .number(let min)? = schema["minItems"], Double(items.count) < min {
                out.append("\(path): \(items.count) items, at least \(Int(min)) expected")
            }
            if case .number(let max)? = schema["maxItems"], Double(items.count) > max {
                out.append("\(path): \(items.count) items, at most \(Int(max)) expected")
            }
            if let itemSchema = schema["items"] {
                for (i, item) in items.enumerated() {
                    check(item, itemSchema, path: "\(path)[\(i)]", depth: depth + 1, into: &out)
                }
            }
        case .object(let object):
            if case .array(let required)? = schema["required"] {
                for key in required.compactMap(\.string) where object[key] == nil {
                    out.append("\(path): missing required key \"\(key)\"")
                }
            }
            let properties = schema["properties"]?.object ?? [:]
            for key in object.keys.sorted() {
                let child = JSONValue.pathAppending(path, key)
                if let propertySchema = properties[key] {
                    check(object[key]!, propertySchema, path: child, depth: depth + 1, into: &out)
                } else if let additional = schema["additionalProperties"] {
                    if case .bool(false) = additional {
                        out.append("\(path): unexpected key \"\(key)\"")
                    } else {
                        check(object[key]!, additional, path: child, depth: depth + 1, into: &out)
                    }
                }
            }
            if case .number(let min)? = schema["minProperties"], Double(object.count) < min {
                out.append("\(path): \(object.count) keys, at least \(Int(min)) expected")
            }
        default:
            break
        }

        if case .array(let all)? = schema["allOf"] {
            for sub in all { check(v, sub, path: path, depth: depth + 1, into: &out) }
        }
        if case .array(let any)? = schema["anyOf"] {
            let results = any.map { branch(v, $0, path: path, depth: depth) }
            if !results.contains(where: \.isEmpty) {
                out.append("\(path): matches none of the \(any.count) anyOf alternatives\(Self.closest(results))")
            }
        }
        if case .array(let one)? = schema["oneOf"] {
            let results = one.map { branch(v, $0, path: path, depth: depth) }
            let passing = results.filter(\.isEmpty).count
            if passing == 0 {
                out.append("\(path): matches none of the \(one.count) oneOf alternatives\(Self.closest(results))")
            } else if passing > 1 {
                out.append("\(path): matches \(passing) of the oneOf alternatives, exactly one expected")
            }
        }
        if let not = schema["not"], branch(v, not, path: path, depth: depth).isEmpty {
            out.append("\(path): matches a schema it must not match")
        }
    }

    private func branch(_ v: JSONValue, _ s: JSONValue, path: String, depth: Int) -> [String] {
        var out: [String] = []
        check(v, s, path: path, depth: depth + 1, into: &out)
        return out
    }

    /// The violations of the alternative that came closest, for the message of a failed
    /// anyOf/oneOf.
    private static func closest(_ results: [[String]]) -> String {
        guard let best = results.min(by: { $0.count < $1.count }), !best.isEmpty else { return "" }
        let shown = best.prefix(3).joined(separator: "; ")
        return " (closest: \(shown)\(best.count > 3 ? "; …" : ""))"
    }

    private static func hasType(_ v: JSONValue, _ type: String) -> Bool {
        switch (type, v) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object): true
        case ("number", .number): true
        case ("integer", .number(let x)): JSONValue.isInteger(x)
        default: false
        }
    }

    /// RFC 3339 / ISO 8601 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with real ranges.
    static func isDateTime(_ s: String) -> Bool {
        let b = Array(s.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var value = 0
            for k in i..<(i + n) {
                guard b[k] >= 0x30 && b[k] <= 0x39 else { return nil }
                value = value * 10 + Int(b[k] - 0x30)
            }
            i += n
            return value
        }
        func expect(_ chars: String) -> Bool {
            guard i < b.count, chars.utf8.contains(b[i]) else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect("-"), let month = digits(2), expect("-"), let day = digits(2),
            expect("Tt"), let hour = digits(2), expect(":"), let minute = digits(2), expect(":"), let second = digits(2)
        else { return false }
        guard (1...12).contains(month), hour < 24, minute < 60, second <= 60 else { return false }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard (1...days).contains(day) else { return false }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            let start = i
            while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
            guard i > start else { return false }
        }
        if i < b.count, b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else {
            guard expect("+-"), let offsetHours = digits(2), expect(":"), let offsetMinutes = digits(2),
                offsetHours < 24, offsetMinutes < 60
            else { return false }
        }
        return i == b.count
    }
}
