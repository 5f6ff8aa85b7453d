/// One argument of a Redis command: raw bytes or UTF-8 text.
///
/// String and integer literals convert implicitly, so a command reads naturally:
/// `try await client.command(["SET", "k", .bytes(data), "PX", 1000])`.
public enum RedisValue: Sendable, Hashable {
    /// Arbitrary bytes, sent as is (may contain NUL).
    case bytes([UInt8])
    /// Text, sent as its UTF-8 encoding.
    case string(String)

    /// An integer argument, sent as its decimal text (what Redis expects for counts, TTLs, …).
    public static func integer(_ value: some BinaryInteger) -> RedisValue {
        .string(String(value))
    }

    /// The bytes sent on the wire for this argument.
    public var wireBytes: [UInt8] {
        switch self {
        case .bytes(let bytes): return bytes
        case .string(let string): return Array(string.utf8)
        }
    }
}

extension RedisValue: ExpressibleByStringLiteral {
    /// Creates a `.string` argument from a literal.
    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

extension RedisValue: ExpressibleByIntegerLiteral {
    /// Creates a decimal `.string` argument from an integer literal.
    public init(integerLiteral value: Int64) {
        self = .string(String(value))
    }
}

/// A reply from the server, decoded from hiredis' `redisReply` (RESP2).
public enum RedisReply: Sendable, Hashable {
    /// A simple string reply, e.g. `OK` or `PONG`.
    case status(String)
    /// An error reply, e.g. `ERR unknown command` or `NOSCRIPT …`. Returned, not thrown, by
    /// ``RedisClient/command(_:)`` and ``RedisClient/pipeline(_:)``.
    case error(String)
    /// An integer reply.
    case integer(Int64)
    /// A bulk string reply: binary-safe bytes.
    case bulk([UInt8])
    /// The null bulk string or null array (a missing key, a timed-out blocking pop, …).
    case null
    /// An array (multi-bulk) reply.
    case array([RedisReply])

    /// The bytes of a `.bulk` reply (or the UTF-8 of a `.status` reply); `nil` otherwise.
    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let bytes): return bytes
        case .status(let text): return Array(text.utf8)
        default: return nil
        }
    }

    /// A `.bulk` or `.status` reply as text (invalid UTF-8 is repaired); `nil` otherwise.
    public var string: String? {
        switch self {
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .status(let text): return text
        default: return nil
        }
    }

    /// The value of an `.integer` reply; `nil` otherwise.
    public var int: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    /// The elements of an `.array` reply; `nil` otherwise.
    public var array: [RedisReply]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The message of an `.error` reply; `nil` otherwise.
    public var errorMessage: String? {
        if case .error(let message) = self { return message }
        return nil
    }

    /// Whether this is the `.null` reply.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

/// A failure of the client itself (not an error reply from the server, which is a ``RedisReply/error(_:)``).
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable, Hashable {
        /// Connecting failed: refused, unreachable, connect timeout, or `AUTH`/`SELECT`/`CLIENT SETNAME`
        /// rejected while setting the connection up (the message carries the server's error).
        case connect
        /// A read or write on the socket exceeded the command timeout.
        case timeout
        /// Another I/O failure: the server closed the connection, a reset, …
        case io
        /// The server sent something hiredis could not parse, or a reply had an unexpected shape.
        case `protocol`
        /// The client was closed (``RedisClient/close()``).
        case closed
        /// The Redis URL could not be parsed.
        case invalidURL
        /// The server answered with an error reply where the call needs success (e.g. ``RedisClient/ping()``).
        case server
    }

    /// What went wrong.
    public var code: Code
    /// A human-readable detail (hiredis' `errstr`, the server's error text, or the parse problem).
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `"redis <code>: <message>"`.
    public var description: String { "redis \(code.rawValue): \(message)" }
}
