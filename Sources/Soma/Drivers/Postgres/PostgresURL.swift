/// Where and how to connect: parsed from `postgresql://[user[:password]@]host[:port][/database][?keyword=value&…]`.
///
/// - The scheme is `postgresql` or `postgres` (any case).
/// - User, password, host, database and query values are percent-decoded. The user info ends at the *last*
///   `@` before the query, so a password containing `@` or `/` works even unencoded; a `?` or `#` in it, and
///   an `@` in a database name, must be written `%3F`, `%23`, `%40`.
/// - The host is a name, an IPv4 address, an IPv6 address in brackets (`[::1]`), or a percent-encoded Unix
///   socket directory (`%2Fvar%2Frun%2Fpostgresql`). Several hosts (`a,b`) are not supported.
/// - The port defaults to 5432 and must be 1…65535. Without a path the database is libpq's default (the user name).
/// - Query parameters are extra libpq connection keywords (`sslmode=require`, `options=-c%20search_path%3Dapp`);
///   keywords libpq does not know fail at connect time with ``PostgresError/Code/connect``. Those the client
///   sets from its configuration take precedence (see ``PostgresClient``).
/// - Surrounding whitespace is ignored; a fragment (`#…`) is an error.
///
/// Invalid input throws ``PostgresError`` with code ``PostgresError/Code/invalidURL`` and a message that says why
/// (the password is never part of it).
public struct PostgresURL: Sendable, Hashable, CustomStringConvertible {
    /// The default PostgreSQL port.
    public static let defaultPort = 5432

    /// Host name or address (IPv6 without brackets), or a Unix socket directory (starts with `/`).
    public var host: String
    /// TCP port (also names the Unix socket file).
    public var port: Int
    /// Role to connect as; `nil` means libpq's default (the operating system user name).
    public var user: String?
    /// Password; `nil` means none (or libpq's own sources: `PGPASSWORD`, `~/.pgpass`).
    public var password: String?
    /// Database name; `nil` means libpq's default (the user name).
    public var database: String?
    /// Extra libpq connection keywords from the query string.
    public var parameters: [String: String]

    /// Creates a URL from its parts.
    public init(
        host: String,
        port: Int = PostgresURL.defaultPort,
        user: String? = nil,
        password: String? = nil,
        database: String? = nil,
        parameters: [String: String] = [:]
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.parameters = parameters
    }

    /// Parses `postgresql://[user[:password]@]host[:port][/database][?keyword=value&…]` (or `postgres://…`).
    /// - Throws: ``PostgresError`` with code ``PostgresError/Code/invalidURL``.
    public init(_ string: String) throws(PostgresError) {
        func fail(_ why: String) -> PostgresError {
            PostgresError(
                .invalidURL,
                "\(why) in PostgreSQL URL \(PostgresURL.redacted(string)); expected postgresql://[user[:password]@]host[:port][/database][?keyword=value]"
            )
        }
        let text = URLText.trimmingWhitespace(string)
        guard let schemeEnd = text.firstRange(of: "://") else { throw fail("missing scheme") }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "postgresql" || scheme == "postgres" else {
            throw fail(scheme.isEmpty ? "missing scheme" : "unsupported scheme '\(scheme)'")
        }
        var rest = Substring(text[schemeEnd.upperBound...])

        // User info ends at the last '@' before the query (a '?' in the password must be encoded).
        let beforeQuery = rest[..<(rest.firstIndex(of: "?") ?? rest.endIndex)]
        var user: String?
        var password: String?
        if let at = beforeQuery.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let userPart: Substring
            if let colon = userInfo.firstIndex(of: ":") {
                userPart = userInfo[..<colon]
                guard let decoded = PostgresURL.percentDecode(userInfo[userInfo.index(after: colon)...]) else {
                    throw fail("invalid percent-encoding in the password")
                }
                password = decoded.isEmpty ? nil : decoded
            } else {
                userPart = userInfo
            }
            guard let decoded = PostgresURL.percentDecode(userPart) else { throw fail("invalid percent-encoding in the user name") }
            user = decoded.isEmpty ? nil : decoded
            if user == nil && password != nil { throw fail("a password needs a user name") }
        }

        if rest.contains("#") { throw fail("a fragment is not supported") }

        // Split off the query, then host[:port] from /database.
        var query: Substring = ""
        if let question = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: question)...]
            rest = rest[..<question]
        }
        let authority: Substring
        var path: Substring?
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
        }

        var host: String
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw fail("unterminated IPv6 address") }
            let address = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
            guard !address.isEmpty, address.contains(":"),
                address.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." })
            else { throw fail("invalid IPv6 address '\(address)'") }
            host = String(address)
        } else {
            let hostPart: Substring
            if let colon = authority.firstIndex(of: ":") {
                hostPart = authority[..<colon]
                portText = authority[authority.index(after: colon)...]
            } else {
                hostPart = authority
            }
            guard !hostPart.isEmpty else { throw fail("missing host") }
            guard let decoded = PostgresURL.percentDecode(hostPart) else { throw fail("invalid percent-encoding in the host") }
            host = decoded
            if !host.hasPrefix("/") {
                guard host.allSatisfy({ ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "." || $0 == "-" || $0 == "_" }) else {
                    throw fail("invalid host '\(hostPart)'")
                }
            }
        }

        var port = PostgresURL.defaultPort
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = Int(portText), (1...65_535).contains(value)
            else { throw fail("invalid port '\(portText)'") }
            port = value
        }

        var database: String?
        if let path, !path.isEmpty {
            guard let decoded = PostgresURL.percentDecode(path), !decoded.isEmpty else {
                throw fail("invalid percent-encoding in the database name")
            }
            guard !decoded.contains("\u{0}") else { throw fail("a NUL character in the database name") }
            database = decoded
        }

        var parameters: [String: String] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            guard let equals = pair.firstIndex(of: "=") else { throw fail("query parameter '\(pair)' without '='") }
            let key = pair[..<equals]
            guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLowercase || $0 == "_" || $0.isNumber) }) else {
                throw fail("invalid query parameter name '\(key)'")
            }
            guard let value = PostgresURL.percentDecode(pair[pair.index(after: equals)...]) else {
                throw fail("invalid percent-encoding in query parameter '\(key)'")
            }
            guard !value.contains("\u{0}") else { throw fail("a NUL character in query parameter '\(key)'") }
            guard parameters[String(key)] == nil else { throw fail("query parameter '\(key)' given twice") }
            parameters[String(key)] = value
        }
        for (field, value) in [("user name", user), ("password", password)] where value?.contains("\u{0}") == true {
            throw fail("a NUL character in the \(field)")
        }

        self.init(host: host, port: port, user: user, password: password, database: database, parameters: parameters)
    }

    /// The URL with the password (and any `password`-like query parameter) replaced by `***` (safe to log).
    public var description: String {
        var text = "postgresql://"
        if let user {
            text += PostgresURL.percentEncode(user)
            if password != nil { text += ":***" }
            text += "@"
        }
        if host.hasPrefix("/") {
            text += PostgresURL.percentEncode(host)
        } else {
            text += host.contains(":") ? "[\(host)]" : host
        }
        text += ":\(port)"
        if let database { text += "/" + PostgresURL.percentEncode(database) }
        if !parameters.isEmpty {
            let pairs = parameters.sorted { $0.key < $1.key }.map { key, value in
                "\(key)=\(key.contains("password") ? "***" : PostgresURL.percentEncode(value))"
            }
            text += "?" + pairs.joined(separator: "&")
        }
        return text
    }

    // MARK: - Helpers

    /// Hides whatever sits between "://" and the last "@" of a raw URL, and a query that names a
    /// password, for error messages.
    static func redacted(_ raw: String) -> String {
        var text = URLText.redactingUserInfo(raw)
        if let question = text.firstIndex(of: "?"), text[question...].contains("password") {
            text = String(text[..<question]) + "?***"
        }
        return text
    }

    static func percentDecode(_ text: Substring) -> String? { URLText.percentDecode(text) }

    static func percentEncode(_ text: String) -> String { URLText.percentEncode(text) }
}
