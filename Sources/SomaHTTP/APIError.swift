/// The error envelope of the HTTP contract: `{"error": {"code", "message", "request_id", "field"?}}`.
///
/// Handlers throw it; the outer middleware renders it (with `Retry-After` when set), and renders any
/// other error as `internal` without leaking what it was. The codes and their statuses are fixed
/// here so the service and its tests share one table.
public struct APIError: Error, Codable, Sendable, Equatable {
    public struct Code: RawRepresentable, Codable, Sendable, Hashable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let invalidJSON = Code(rawValue: "invalid_json")
        public static let invalidRequest = Code(rawValue: "invalid_request")
        public static let unauthorized = Code(rawValue: "unauthorized")
        public static let forbidden = Code(rawValue: "forbidden")
        public static let notFound = Code(rawValue: "not_found")
        public static let payloadTooLarge = Code(rawValue: "payload_too_large")
        public static let unsupportedMediaType = Code(rawValue: "unsupported_media_type")
        public static let requestTimeout = Code(rawValue: "request_timeout")
        public static let validationFailed = Code(rawValue: "validation_failed")
        public static let unknownModule = Code(rawValue: "unknown_module")
        public static let idempotencyKeyReused = Code(rawValue: "idempotency_key_reused")
        public static let rateLimited = Code(rawValue: "rate_limited")
        public static let overloaded = Code(rawValue: "overloaded")
        public static let unavailable = Code(rawValue: "unavailable")
        public static let deadlineExceeded = Code(rawValue: "deadline_exceeded")
        public static let `internal` = Code(rawValue: "internal")

        /// The HTTP status of each code (docs/ARCHITECTURE.md §7).
        public var status: Int {
            switch self {
            case .invalidJSON, .invalidRequest: 400
            case .unauthorized: 401
            case .forbidden: 403
            case .notFound: 404
            case .requestTimeout: 408
            case .payloadTooLarge: 413
            case .unsupportedMediaType: 415
            case .validationFailed, .unknownModule, .idempotencyKeyReused: 422
            case .rateLimited: 429
            case .overloaded, .unavailable: 503
            case .deadlineExceeded: 504
            default: 500
            }
        }
    }

    public var code: Code
    public var message: String
    public var requestID: String?
    /// The request field a `validation_failed` is about (a JSON path such as `items[2].text`).
    public var field: String?
    /// Sent as `Retry-After` (whole seconds, rounded up) with 429 and 503.
    public var retryAfter: Duration?
    /// Extra response headers (e.g. `RateLimit-*` on a 429).
    public var headers: [String: String]

    public init(_ code: Code, _ message: String, requestID: String? = nil, field: String? = nil, retryAfter: Duration? = nil, headers: [String: String] = [:]) {
        self.code = code
        self.message = message
        self.requestID = requestID
        self.field = field
        self.retryAfter = retryAfter
        self.headers = headers
    }

    enum CodingKeys: String, CodingKey {
        case code, message, field
        case requestID = "request_id"
    }

    public static func == (lhs: APIError, rhs: APIError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.requestID == rhs.requestID && lhs.field == rhs.field
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(code, forKey: .code)
        try c.encode(message, forKey: .message)
        try c.encodeIfPresent(requestID, forKey: .requestID)
        try c.encodeIfPresent(field, forKey: .field)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            try c.decode(Code.self, forKey: .code),
            try c.decode(String.self, forKey: .message),
            requestID: try c.decodeIfPresent(String.self, forKey: .requestID),
            field: try c.decodeIfPresent(String.self, forKey: .field)
        )
    }
}
