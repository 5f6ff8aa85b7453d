/// The error envelope of the HTTP contract: `{"error": {"code", "message", "request_id"}}`.
///
/// The routes arrive with the HTTP service; the codes and their statuses are fixed here so the CLI,
/// the service and its tests share one table.
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
        public static let validationFailed = Code(rawValue: "validation_failed")
        public static let unknownModule = Code(rawValue: "unknown_module")
        public static let rateLimited = Code(rawValue: "rate_limited")
        public static let overloaded = Code(rawValue: "overloaded")
        public static let unavailable = Code(rawValue: "unavailable")
        public static let deadlineExceeded = Code(rawValue: "deadline_exceeded")
        public static let `internal` = Code(rawValue: "internal")

        /// The HTTP status of each code (ARCHITECTURE §4).
        public var status: Int {
            switch self {
            case .invalidJSON, .invalidRequest: 400
            case .unauthorized: 401
            case .forbidden: 403
            case .notFound: 404
            case .payloadTooLarge: 413
            case .unsupportedMediaType: 415
            case .validationFailed, .unknownModule: 422
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

    public init(_ code: Code, _ message: String, requestID: String? = nil) {
        self.code = code
        self.message = message
        self.requestID = requestID
    }

    enum CodingKeys: String, CodingKey {
        case code, message
        case requestID = "request_id"
    }
}
