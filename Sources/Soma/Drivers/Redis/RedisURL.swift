/// Where and how to connect: parsed from `redis://[[username]:password@]host[:port][/db]`.
///
/// - The scheme is `redis` (any case); `rediss` (TLS) and `unix` are rejected: the hiredis in use has neither.
/// - `username` and `password` are percent-decoded. The *last* `@` ends the user info, so a password
///   containing `@`, `/`, `?` or `#` works even unencoded.
/// - The host is a name, an IPv4 address, or an IPv6 address in brackets (`[::1]`, `[fe80::1%25eth0]`).
/// - The port defaults to 6379 and must be 1…65535; the database defaults to 0 (`/` or no path).
/// - Surrounding whitespace is ignored; a query (`?…`) or fragment (`#…`) is an error.
///
/// Invalid input throws ``RedisError`` with code ``RedisError/Code/invalidURL`` and a message that says why.
public struct RedisURL: Sendable, Hashable, CustomStringConvertible {
    /// The default Redis port.
    public static let defaultPort = 6379

    /// Host name or address (IPv6 without brackets).
    public var host: String
    /// TCP port.
    public var port: Int
    /// ACL user for `AUTH username password` (Redis 6+); `nil` means `AUTH password`.
    public var username: String?
    /// Password for `AUTH`; `nil` means no `AUTH` on connect.
    public var password: String?
    /// Database index for `SELECT` on connect (skipped when 0).
    public var database: Int

    /// Creates a URL from its parts.
    public init(host: String, port: Int = RedisURL.defaultPort, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `redis://[[username]:password@]host[:port][/db]`.
    /// - Throws: ``RedisError`` with code ``RedisError/Code/invalidURL``.
    public init(_ string: String) throws(RedisError) {
        func fail(_ why: String) -> RedisError {
            RedisError(.invalidURL, "\(why) in Redis URL \(RedisURL.redacted(string)); expected redis://[[user]:password@]host[:port][/db]")
        }
        let text = URLText.trimmingWhitespace(string)
        guard let schemeEnd = text.firstRange(of: "://") else { throw fail("missing scheme") }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "redis": break
        case "rediss": throw fail("TLS (rediss) is not supported")
        case "": throw fail("missing scheme")
        default: throw fail("unsupported scheme '\(scheme)'")
        }
        var rest = Substring(text[schemeEnd.upperBound...])

        // User info ends at the last '@' (a database path never contains one).
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            guard let colon = userInfo.firstIndex(of: ":") else {
                throw fail("user info without ':' (write the password as :password@)")
            }
            guard let user = RedisURL.percentDecode(userInfo[..<colon]),
                let pass = RedisURL.percentDecode(userInfo[userInfo.index(after: colon)...])
            else { throw fail("invalid percent-encoding in user info") }
            username = user.isEmpty ? nil : user
            password = pass.isEmpty ? nil : pass
            if username != nil && password == nil { throw fail("a username needs a password") }
        }

        if rest.contains("?") { throw fail("query parameters are not supported") }
        if rest.contains("#") { throw fail("a fragment is not supported") }

        // Split host[:port] from /db.
        let authority: Substring
        let path: Substring
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
            path = ""
        }

        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw fail("unterminated IPv6 address") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail("unexpected text after IPv6 address") }
                portText = after.dropFirst()
            }
            // An optional zone id: "%25eth0" (RFC 6874) or a bare "%eth0"; hiredis/getaddrinfo want "%eth0".
            var zone: Substring = ""
            if let percent = host.firstIndex(of: "%") {
                zone = host[host.index(after: percent)...]
                if zone.hasPrefix("25") { zone = zone.dropFirst(2) }
                host = host[..<percent]
                guard !zone.isEmpty, zone.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
                    throw fail("invalid IPv6 zone id")
                }
            }
            guard !host.isEmpty, host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }), host.contains(":") else {
                throw fail("invalid IPv6 address '\(host)'")
            }
            if !zone.isEmpty { host = Substring(String(host) + "%" + zone) }
        } else {
            if let colon = authority.firstIndex(of: ":") {
                host = authority[..<colon]
                portText = authority[authority.index(after: colon)...]
            } else {
                host = authority
            }
            guard !host.isEmpty else { throw fail("missing host") }
            guard host.allSatisfy({ ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "." || $0 == "-" || $0 == "_" }) else {
                throw fail("invalid host '\(host)'")
            }
        }

        var port = RedisURL.defaultPort
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = Int(portText), (1...65_535).contains(value)
            else { throw fail("invalid port '\(portText)'") }
            port = value
        }

        var database = 0
        if !path.isEmpty {
            guard path.count <= 9, path.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(path) else {
                throw fail("invalid database '\(path)' (expected a number)")
            }
            database = value
        }

        self.init(host: String(host), port: port, username: username, password: password, database: database)
    }

    /// The URL with the password replaced by `***` (safe to log).
    public var description: String {
        var text = "redis://"
        if password != nil {
            text += "\(username.map(RedisURL.percentEncode) ?? ""):***@"
        }
        text += host.contains(":") ? "[\(host.replacing("%", with: "%25"))]" : host
        text += ":\(port)"
        if database != 0 { text += "/\(database)" }
        return text
    }

    // MARK: - Helpers

    /// Hides whatever sits between "://" and the last "@" of a raw URL, for error messages.
    static func redacted(_ raw: String) -> String { URLText.redactingUserInfo(raw) }

    static func percentDecode(_ text: Substring) -> String? { URLText.percentDecode(text) }

    static func percentEncode(_ text: String) -> String { URLText.percentEncode(text) }
}
