import Foundation
import HTTPTypes
public import Hummingbird
import NIOCore
import NIOHTTP1
import Soma

/// Hummingbird's request decoder for Soma's contexts (`request.decode(as:context:)`): JSON only
/// (415 otherwise), the body capped by the context (413), 400 `invalid_json` for malformed JSON,
/// 422 `validation_failed` naming the field for a wrong shape.
public struct ContractJSONDecoder: RequestDecoder {
    public func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        guard let type = request.headers[.contentType], JSONIO.isJSON(type) else {
            throw APIError(.unsupportedMediaType, "the body must be JSON (Content-Type: application/json)")
        }
        let buffer = try await JSONIO.collect(request, context: context)
        return try JSONIO.decode(T.self, from: buffer.readableBytesView)
    }
}

/// JSON responses and the contract's error envelope.
enum JSONIO {
    static let contentType = "application/json; charset=utf-8"

    /// The body up to the context's cap (`maxUploadSize`), 413 with the contract's error above it.
    static func collect(_ request: Request, context: some RequestContext) async throws -> ByteBuffer {
        let limit = context.maxUploadSize
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.payloadTooLarge, "the body is larger than \(limit) bytes")
        }
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(.payloadTooLarge, "the body is larger than \(limit) bytes")
        } catch is NIOTooManyBytesError {
            // A body without Content-Length (chunked) that grew past the cap while being read.
            throw APIError(.payloadTooLarge, "the body is larger than \(limit) bytes")
        } catch is RequestBodyTimeout {
            throw APIError(.requestTimeout, "the body did not arrive within the body timeout")
        } catch is HTTPParserError {
            // Bad framing (a chunk size that is not hex, negative or overflowing): the client's fault.
            throw APIError(.invalidRequest, "the body's framing is malformed")
        }
    }

    /// Decodes a JSON body with the contract's errors; a member name repeated within one object is
    /// refused (400 `invalid_json`) rather than resolved silently.
    static func decode<T: Decodable>(_ type: T.Type, from bytes: some RandomAccessCollection<UInt8>) throws -> T {
        let value: T
        do {
            value = try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw apiError(error)
        }
        if let name = DuplicateKeys.first(in: bytes) {
            throw APIError(.invalidJSON, "the body repeats the member \"\(name.prefix(64))\" in one object")
        }
        return value
    }

    static func isJSON(_ contentType: String) -> Bool {
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json"))
    }

    /// Maps a decoding failure to the contract: syntax → `invalid_json`, shape → `validation_failed`.
    static func apiError(_ error: DecodingError) -> APIError {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            var out = ""
            for key in codingPath + (last.map { [$0] } ?? []) {
                if let index = key.intValue { out += "[\(index)]" } else { out += out.isEmpty ? key.stringValue : "." + key.stringValue }
            }
            return out.isEmpty ? "$" : out
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return APIError(.invalidJSON, "the body is not valid JSON")
        case .dataCorrupted(let context) where context.debugDescription == unknownMemberDescription:
            let field = path(context.codingPath)
            return APIError(.validationFailed, "\(field): unknown member", field: field)
        case .dataCorrupted(let context):
            let field = path(context.codingPath)
            return APIError(.validationFailed, "\(field): invalid value", field: field)
        case .keyNotFound(let key, let context):
            let field = path(context.codingPath, key)
            return APIError(.validationFailed, "\(field) is required", field: field)
        case .typeMismatch(let type, let context):
            let field = path(context.codingPath)
            return APIError(.validationFailed, "\(field) must be \(describe(type))", field: field)
        case .valueNotFound(let type, let context):
            let field = path(context.codingPath)
            return APIError(.validationFailed, "\(field) must be \(describe(type)), not null", field: field)
        @unknown default:
            return APIError(.invalidJSON, "the body could not be read")
        }
    }

    private static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Double.Type: "a number"
        case is Bool.Type: "a boolean"
        case is [Any].Type: "an array"
        default:
            String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }

    /// A JSON response from writer bytes.
    static func response(_ status: HTTPResponse.Status, _ bytes: [UInt8], headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = contentType
        var buffer = ByteBuffer()
        buffer.writeBytes(bytes)
        return Response(status: status, headers: fields, body: .init(byteBuffer: buffer))
    }

    /// Builds a JSON object with the fast writer.
    static func object(_ build: (inout JSONWriter) -> Void) -> [UInt8] {
        var w = JSONWriter(capacity: 512)
        w.beginObject()
        build(&w)
        w.endObject()
        return w.bytes
    }

    /// The error envelope.
    static func errorBody(_ error: APIError) -> [UInt8] {
        object { w in
            w.key("error")
            writeError(&w, error)
        }
    }

    /// The object under `error`.
    static func writeError(_ w: inout JSONWriter, _ error: APIError) {
        w.beginObject()
        w.key("code"); w.string(error.code.rawValue)
        w.key("message"); w.string(error.message)
        w.key("request_id"); w.string(error.requestID ?? "")
        if let field = error.field { w.key("field"); w.string(field) }
        w.endObject()
    }

    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    static func seconds(_ d: Duration) -> Int {
        let (s, atto) = d.components
        return max(1, Int(s) + (atto > 0 ? 1 : 0))
    }
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds) of a decision.
enum RateLimitHeaders {
    static func fields(_ decision: RateLimitDecision) -> [HTTPField] {
        [
            HTTPField(name: .rateLimitLimit, value: String(decision.limit)),
            HTTPField(name: .rateLimitRemaining, value: String(max(0, decision.remaining))),
            HTTPField(name: .rateLimitReset, value: String(JSONIO.seconds(decision.resetAfter))),
        ]
    }
}
