import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Soma

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
    static let somaInstance = Self("Soma-Instance")!
    static let userID = Self("X-User-Id")!
    static let userTier = Self("X-User-Tier")!
    static let requestDeadline = Self("X-Request-Deadline-Ms")!
    static let idempotencyKey = Self("Idempotency-Key")!
    static let rateLimitLimit = Self("RateLimit-Limit")!
    static let rateLimitRemaining = Self("RateLimit-Remaining")!
    static let rateLimitReset = Self("RateLimit-Reset")!
}

/// The outermost middleware: request id in and out, every error rendered as the JSON envelope,
/// one metric sample and one structured log line per request.
struct RequestMiddleware: RouterMiddleware {
    typealias Context = SomaRequestContext
    let metrics: SomaMetrics
    let inFlight: InFlightCounter
    let bodyLimit: Int
    /// This instance's id (`INSTANCE_ID`), sent as `Soma-Instance` on every response: which
    /// instance behind the gateway answered, for operators and for the chaos suite's write audit
    /// (per-instance acknowledgement order, docs/ARCHITECTURE.md §4).
    let instance: String
    /// All of one request's Redis calls together wait at most this long (`RedisBudget`); `nil`
    /// without Redis.
    let redisBudget: Duration?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let clock = ContinuousClock()
        let start = clock.now
        var context = context
        context.requestID = Self.requestID(from: request)
        context.bodyLimit = bodyLimit
        context.logger[metadataKey: "soma.request.id"] = .string(context.requestID)
        inFlight.change(by: 1)
        defer { inFlight.change(by: -1) }

        var response: Response
        do {
            if let redisBudget {
                response = try await RedisBudget.within(redisBudget) { try await next(request, context) }
            } else {
                response = try await next(request, context)
            }
        } catch {
            response = Self.render(error, requestID: context.requestID, logger: context.logger)
        }
        response.headers[.requestID] = context.requestID
        response.headers[.somaInstance] = instance
        let elapsed = clock.now - start
        let route = context.endpointPath ?? "unmatched"
        metrics.http(route: route, method: request.method.rawValue, status: response.status.code, duration: elapsed)
        let level: Logger.Level =
            switch response.status.code {
            case 503: .info  // shedding and draining are expected under load and on shutdown
            case 500...: .warning
            default: .debug
            }
        context.logger.log(
            level: level, "request",
            metadata: [
                "soma.http.method": .string(request.method.rawValue),
                "soma.http.route": .string(route),
                "soma.http.status": .stringConvertible(response.status.code),
                "soma.http.duration_ms": .stringConvertible(
                    Double(elapsed.components.attoseconds / 1_000_000_000_000) / 1000 + Double(elapsed.components.seconds) * 1000),
            ])
        return response
    }

    /// A client's id when it is sane (1–128 of `A–Z a–z 0–9 . _ : -`: trace ids and UUIDs pass,
    /// nothing that could plant a field in a log line or break out of a JSON string), else a
    /// fresh one. nginx applies the same rule (deploy/nginx/soma-http.conf).
    static func requestID(from request: Request) -> String {
        if let given = request.headers[.requestID], (1...128).contains(given.utf8.count), given.utf8.allSatisfy(Self.isRequestIDByte) {
            return given
        }
        return RequestIDGenerator.next()
    }

    static func isRequestIDByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"): true
        default: false
        }
    }

    /// Renders any error as the contract's envelope; internals never reach the client.
    static func render(_ error: any Error, requestID: String, logger: Logger) -> Response {
        let api = apiError(for: error, requestID: requestID, logger: logger)
        var headers = HTTPFields()
        if let retry = api.retryAfter { headers[.retryAfter] = String(JSONIO.seconds(retry)) }
        for (name, value) in api.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return JSONIO.response(.init(code: api.code.status), JSONIO.errorBody(api), headers: headers)
    }

    /// The contract's error for any error: the runtime's refusals and store failures by kind,
    /// anything unexpected as `internal` (logged, never shown).
    static func apiError(for error: any Error, requestID: String, logger: Logger) -> APIError {
        var api: APIError
        switch error {
        case let e as APIError:
            api = e
        case let e as HTTPError:
            switch e.status.code {
            case 404, 405: api = APIError(.notFound, "no such route")
            case 413: api = APIError(.payloadTooLarge, "the body is too large")
            case 400: api = APIError(.invalidRequest, "the request is malformed")
            default:
                logger.warning("unexpected HTTP error", metadata: ["soma.error": .string("\(e)")])
                api = APIError(.internal, "internal error")
            }
        case is NIOTooManyBytesError:
            api = APIError(.payloadTooLarge, "the body is too large")
        case is HTTPParserError:
            api = APIError(.invalidRequest, "the request is malformed")
        case let e as Refusal:
            switch e.kind {
            case .rateLimited: api = APIError(.rateLimited, e.message, retryAfter: e.retryAfter)
            case .overloaded: api = APIError(.overloaded, e.message, retryAfter: e.retryAfter)
            case .deadlineExceeded: api = APIError(.deadlineExceeded, e.message)
            case .idempotencyKeyReused: api = APIError(.idempotencyKeyReused, e.message, field: "Idempotency-Key")
            case .failed:
                logger.warning("request failed", metadata: ["soma.error": .string(e.message)])
                api = APIError(.internal, "internal error")
            }
        case let e as StoreError:
            if e.code != .invalidCursor { logger.warning("store error", metadata: ["soma.error": .string(e.description)]) }
            api =
                e.code == .invalidCursor
                ? APIError(.invalidRequest, "cursor is not valid", field: "cursor")
                : e.code == .unavailable
                    ? APIError(.unavailable, "storage is unavailable, retry later", retryAfter: .seconds(1))
                    : APIError(.internal, "internal error")
        default:
            logger.error("unhandled error", metadata: ["soma.error": .string(String(reflecting: error))])
            api = APIError(.internal, "internal error")
        }
        api.requestID = requestID
        return api
    }
}

/// `/v1` auth and identity (docs/ARCHITECTURE.md §7): the service token when one is configured, then
/// `X-User-Id` and `X-User-Tier`.
struct IdentityMiddleware: RouterMiddleware {
    typealias Context = SomaRequestContext
    let serviceToken: String?
    let activeUsers: ActiveUsers
    /// Refuses a caller who keeps sending invalid requests (counted once authenticated, so nobody
    /// without the token can spend another user's allowance).
    let invalidRequests: InvalidRequestGuard
    let metrics: SomaMetrics

    /// The statuses that count as an invalid request: the caller's input was wrong.
    static let invalidStatuses: Set<Int> = [400, 413, 415, 422]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let serviceToken {
            guard let presented = bearer(request), ConstantTime.equals(presented, serviceToken) else {
                throw APIError(.unauthorized, "a valid service token is required (Authorization: Bearer …)")
            }
        }
        let user: String
        let given = request.headers[fields: .userID]
        if !given.isEmpty {
            user = try Self.userID(given)
        } else if serviceToken != nil {
            throw APIError(.invalidRequest, "X-User-Id is required", field: "X-User-Id")
        } else {
            user = "anonymous"
        }
        var tier = Tier.standard
        if let given = request.headers[.userTier] {
            guard let parsed = Tier(header: given) else {
                throw APIError(.invalidRequest, "X-User-Tier must be premium, standard or free", field: "X-User-Tier")
            }
            tier = parsed
        }
        activeUsers.record(user)
        var context = context
        let caller = Caller(user: user, tier: tier)
        context.caller = caller
        // Quoted and escaped: an id with spaces or `key=value` cannot plant fields in a log line.
        context.logger[metadataKey: "soma.user.id"] = .string(String(reflecting: user))
        if let wait = invalidRequests.refusal(user) {
            metrics.increment(SomaMetrics.Name.invalidRefused)
            // RateLimit-* describe the limit that applies: this one, spent.
            throw APIError(
                .rateLimited, "too many invalid requests from this user; retry later", retryAfter: wait,
                headers: [
                    "RateLimit-Limit": String(invalidRequests.configuration.limit), "RateLimit-Remaining": "0",
                    "RateLimit-Reset": String(JSONIO.seconds(wait)),
                ])
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = RequestMiddleware.render(error, requestID: context.requestID, logger: context.logger)
        }
        if Self.invalidStatuses.contains(response.status.code) { invalidRequests.record(user) }
        if let decision = caller.ledger.recorded {
            for field in RateLimitHeaders.fields(decision) where response.headers[field.name] == nil {
                response.headers.append(field)
            }
        }
        return response
    }
}

extension IdentityMiddleware {
    /// The user id of the `X-User-Id` fields: exactly one field, whose bytes are valid UTF-8 (ids
    /// are compared as exact bytes: a lossy decoding would let distinct ids merge), 1 to 128
    /// bytes of printable characters.
    static func userID(_ fields: [HTTPField]) throws -> String {
        guard fields.count == 1 else {
            throw APIError(.invalidRequest, "X-User-Id must be sent once", field: "X-User-Id")
        }
        let decoded = fields[0].withUnsafeBytesOfValue { String(validating: $0, as: UTF8.self) }
        guard let id = decoded else {
            throw APIError(.invalidRequest, "X-User-Id must be valid UTF-8", field: "X-User-Id")
        }
        guard (1...128).contains(id.unicodeScalars.count), id.unicodeScalars.allSatisfy({ !$0.properties.generalCategory.isControlOrSeparator || $0 == " " })
        else {
            throw APIError(.invalidRequest, "X-User-Id must be 1 to 128 printable characters", field: "X-User-Id")
        }
        return id
    }
}

/// `/admin` auth: a separate token; with none configured, admin is refused outright.
struct AdminMiddleware: RouterMiddleware {
    typealias Context = SomaRequestContext
    let adminToken: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let adminToken else {
            throw APIError(.forbidden, "admin routes are disabled: no admin token is configured")
        }
        guard let presented = bearer(request), ConstantTime.equals(presented, adminToken) else {
            throw APIError(.unauthorized, "a valid admin token is required (Authorization: Bearer …)")
        }
        return try await next(request, context)
    }
}

private func bearer(_ request: Request) -> Substring? {
    guard let header = request.headers[.authorization] else { return nil }
    let parts = header.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    return parts[1].drop { $0 == " " }
}

extension Unicode.GeneralCategory {
    fileprivate var isControlOrSeparator: Bool {
        switch self {
        case .control, .format, .lineSeparator, .paragraphSeparator, .spaceSeparator, .surrogate, .unassigned, .privateUse: true
        default: false
        }
    }
}
