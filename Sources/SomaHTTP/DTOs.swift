import HTTPTypes
import Soma

/// Request bodies refuse members they do not define (422 `validation_failed` naming the member,
/// as openapi.yaml's `additionalProperties: false` says): a misspelt optional member such as
/// `"module"` would otherwise be ignored and every module run.
private struct MemberName: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// What `JSONIO.apiError` recognises as an unknown member.
let unknownMemberDescription = "unknown member"

extension Decoder {
    fileprivate func refuseMembers(except allowed: Set<String>) throws {
        let container = try container(keyedBy: MemberName.self)
        if let unknown = container.allKeys.first(where: { !allowed.contains($0.stringValue) }) {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [unknown], debugDescription: unknownMemberDescription))
        }
    }
}

/// `POST /v1/analyze` and one batch item.
struct AnalyzeBody: Decodable, Sendable {
    var text: String
    var modules: [String]?

    private enum CodingKeys: String, CodingKey, CaseIterable { case text, modules }

    init(from decoder: any Decoder) throws {
        try decoder.refuseMembers(except: Set(CodingKeys.allCases.map(\.rawValue)))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        text = try c.decode(String.self, forKey: .text)
        modules = try c.decodeIfPresent([String].self, forKey: .modules)
    }
}

/// `POST /v1/analyze/batch`.
struct BatchBody: Decodable, Sendable {
    var items: [AnalyzeBody]
    /// The default module list for items that give none.
    var modules: [String]?

    private enum CodingKeys: String, CodingKey, CaseIterable { case items, modules }

    init(from decoder: any Decoder) throws {
        try decoder.refuseMembers(except: Set(CodingKeys.allCases.map(\.rawValue)))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        items = try c.decode([AnalyzeBody].self, forKey: .items)
        modules = try c.decodeIfPresent([String].self, forKey: .modules)
    }
}

/// The single-module routes and `POST /v1/entries`.
struct TextBody: Decodable, Sendable {
    var text: String

    private enum CodingKeys: String, CodingKey, CaseIterable { case text }

    init(from decoder: any Decoder) throws {
        try decoder.refuseMembers(except: Set(CodingKeys.allCases.map(\.rawValue)))
        text = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .text)
    }
}

/// `POST /admin/cache/warm`.
struct WarmBody: Decodable, Sendable {
    var texts: [String]?
    var modules: [String]?
    /// How many of the most active users' profiles to preload.
    var users: Int?

    private enum CodingKeys: String, CodingKey, CaseIterable { case texts, modules, users }

    /// An empty body: every member absent.
    init() {}

    init(from decoder: any Decoder) throws {
        try decoder.refuseMembers(except: Set(CodingKeys.allCases.map(\.rawValue)))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        texts = try c.decodeIfPresent([String].self, forKey: .texts)
        modules = try c.decodeIfPresent([String].self, forKey: .modules)
        users = try c.decodeIfPresent(Int.self, forKey: .users)
    }
}

enum Validation {
    /// The `Idempotency-Key` of a request: none, or one field of 1 to 255 printable ASCII
    /// characters (a repeated field is refused: which one would count is not the server's guess).
    static func idempotencyKey(_ fields: [HTTPField]) throws -> String? {
        guard let field = fields.first else { return nil }
        let value = field.value
        guard fields.count == 1, (1...255).contains(value.utf8.count), value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else {
            throw APIError(.invalidRequest, "Idempotency-Key must be sent once, 1 to 255 printable ASCII characters", field: "Idempotency-Key")
        }
        return value
    }

    /// Parses a module list: all modules when absent; 422 `validation_failed` when empty,
    /// `unknown_module` naming the first unknown one.
    static func modules(_ names: [String]?, field: String) throws -> [Module] {
        guard let names else { return Module.allCases }
        guard !names.isEmpty else {
            throw APIError(.validationFailed, "\(field) must name at least one module", field: field)
        }
        var chosen: Set<Module> = []
        for (i, name) in names.enumerated() {
            guard let module = Module(name: name) else {
                throw APIError(
                    .unknownModule, "\(field)[\(i)]: unknown module \"\(name.prefix(64))\"; known: \(Module.allCases.map(\.rawValue).joined(separator: ", "))",
                    field: "\(field)[\(i)]")
            }
            chosen.insert(module)
        }
        return chosen.sorted()
    }

    /// A text must have a non-blank character and fit the tier's size cap (413 above it).
    static func text(_ text: String, field: String, limits: TierLimits, tier: Tier) throws {
        guard text.contains(where: { !$0.isWhitespace }) else {
            throw APIError(.validationFailed, "\(field) must not be empty", field: field)
        }
        guard !text.utf8.contains(0) else {
            // PostgreSQL text cannot hold NUL; refusing it here keeps both stores alike.
            throw APIError(.validationFailed, "\(field) must not contain NUL characters", field: field)
        }
        let bytes = text.utf8.count
        guard bytes <= limits.maxTextBytes else {
            throw APIError(.payloadTooLarge, "\(field) is \(bytes) bytes; the \(tier.rawValue) tier allows \(limits.maxTextBytes)", field: field)
        }
    }
}
