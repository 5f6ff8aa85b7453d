/// A query parameter (`$1`, `$2`, …). Values always travel separately from the SQL text, never spliced in.
///
/// `.bytes` is sent in binary format with the type `bytea`; the other cases are sent as text with an
/// unspecified type, so the server infers each parameter's type from its context (as for an untyped
/// literal): write a cast (`$1::bigint`) where the context does not say, e.g. `SELECT $1::bigint + 1`.
public enum PostgresValue: Sendable, Hashable {
    /// Text (must not contain NUL, which PostgreSQL text cannot store).
    case text(String)
    /// A 64-bit integer, sent as its decimal text.
    case integer(Int64)
    /// Raw bytes for a `bytea` (any bytes, NUL included), sent in binary format.
    case bytes([UInt8])
    /// A boolean, sent as `true` / `false`.
    case bool(Bool)
    /// SQL NULL.
    case null
}

extension PostgresValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    /// A `.text` value.
    public init(stringLiteral value: String) { self = .text(value) }
    /// An `.integer` value.
    public init(integerLiteral value: Int64) { self = .integer(value) }
    /// A `.bool` value.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// One result row: every column as PostgreSQL's text representation (or NULL), with typed readers.
///
/// A column index out of range reads as NULL. Readers return `nil` for NULL and for text that does not
/// parse as the requested type.
public struct PostgresRow: Sendable, Hashable {
    /// The raw text of each column (`nil` for NULL).
    public var values: [String?]

    /// Creates a row from column texts.
    public init(values: [String?]) {
        self.values = values
    }

    /// The number of columns.
    public var count: Int { values.count }

    /// The column's text.
    public func string(_ column: Int) -> String? {
        values.indices.contains(column) ? values[column] : nil
    }

    /// The column as a 64-bit integer (`smallint`, `integer`, `bigint`, or text holding one).
    public func int64(_ column: Int) -> Int64? {
        string(column).flatMap { Int64($0) }
    }

    /// The column as a `Double` (`real`, `double precision`, `numeric`, integers; `NaN`, `±Infinity`).
    public func double(_ column: Int) -> Double? {
        guard let text = string(column) else { return nil }
        switch text {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return Double(text)
        }
    }

    /// The column as bytes: a `bytea` in the text output format — hex (`\x0001ff`, the default) or the
    /// older escape format (`\000\001`) — decoded. `nil` for NULL or malformed text.
    public func bytes(_ column: Int) -> [UInt8]? {
        guard let text = string(column) else { return nil }
        return PostgresRow.decodeBytea(Array(text.utf8))
    }

    /// The column as a boolean (`t`/`f` as PostgreSQL prints `boolean`; also `true`/`false`, `1`/`0`,
    /// `yes`/`no`, `on`/`off`, as text parameters come back).
    public func bool(_ column: Int) -> Bool? {
        switch string(column)?.lowercased() {
        case "t", "true", "1", "y", "yes", "on": return true
        case "f", "false", "0", "n", "no", "off": return false
        default: return nil
        }
    }

    /// Whether the column is NULL (or out of range).
    public func isNull(_ column: Int) -> Bool {
        string(column) == nil
    }

    static func decodeBytea(_ text: [UInt8]) -> [UInt8]? {
        let backslash = UInt8(ascii: "\\")
        if text.count >= 2, text[0] == backslash, text[1] == UInt8(ascii: "x") {
            func nibble(_ byte: UInt8) -> UInt8? {
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
                default: return nil
                }
            }
            let digits = text.dropFirst(2)
            guard digits.count % 2 == 0 else { return nil }
            var out: [UInt8] = []
            out.reserveCapacity(digits.count / 2)
            var index = digits.startIndex
            while index < digits.endIndex {
                guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
                out.append(high << 4 | low)
                index += 2
            }
            return out
        }
        // Escape format: `\\` is a backslash, `\ooo` an octal byte, anything else literal.
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var index = 0
        while index < text.count {
            let byte = text[index]
            guard byte == backslash else {
                out.append(byte)
                index += 1
                continue
            }
            if index + 1 < text.count, text[index + 1] == backslash {
                out.append(backslash)
                index += 2
                continue
            }
            guard index + 3 < text.count else { return nil }
            let octal = text[(index + 1)...(index + 3)]
            guard octal.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "7")).contains($0) }) else { return nil }
            let value = octal.reduce(0) { $0 * 8 + Int($1 - UInt8(ascii: "0")) }
            guard value <= 255 else { return nil }
            out.append(UInt8(value))
            index += 4
        }
        return out
    }
}

/// What a statement returned.
public struct PostgresResult: Sendable, Hashable {
    /// The rows (empty for statements that return none).
    public var rows: [PostgresRow]
    /// Rows inserted, updated, deleted, selected, … as the command tag says (0 when it says nothing, e.g. DDL).
    public var affectedRows: Int
    /// Column names, in order.
    public var columns: [String]
    /// The command tag, e.g. `INSERT 0 1`, `UPDATE 3`, `SELECT 2`, `CREATE TABLE`.
    public var commandTag: String

    /// Creates a result.
    public init(rows: [PostgresRow] = [], affectedRows: Int = 0, columns: [String] = [], commandTag: String = "") {
        self.rows = rows
        self.affectedRows = affectedRows
        self.columns = columns
        self.commandTag = commandTag
    }

    /// The index of the column named `name` (the first, when several share it).
    public func column(named name: String) -> Int? {
        columns.firstIndex(of: name)
    }
}

/// A failure of ``PostgresClient``: the client's own (connect, I/O, timeout, closed) or the server's
/// (``Code/query``, with the SQLSTATE).
public struct PostgresError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable, Hashable {
        /// The PostgreSQL URL could not be parsed.
        case invalidURL
        /// Connecting failed: refused, unreachable, timed out (``PostgresClient/Configuration/connectTimeout``),
        /// authentication or an unknown database or connection keyword.
        case connect
        /// The statement was cancelled by `statement_timeout` (SQLSTATE 57014, the connection stays usable),
        /// or the server did not answer within ``PostgresClient/Configuration/queryTimeout`` + 1 s and the
        /// client closed the connection (no SQLSTATE).
        case timeout
        /// The server rejected the statement (syntax, constraint, permission, …): see ``PostgresError/sqlState``.
        case query
        /// The client was closed (``PostgresClient/close()``).
        case closed
        /// The connection broke while in use: the server closed it (restart, `pg_terminate_backend`), a reset, …
        /// It is not known whether the statement ran.
        case io
    }

    /// What went wrong.
    public var code: Code
    /// The five-character SQLSTATE when the server sent one, e.g. `23505` (unique violation),
    /// `40001` (serialization failure), `57014` (statement timeout).
    public var sqlState: String?
    /// A human-readable detail: the server's message (with its DETAIL), or libpq's, or the client's.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String, sqlState: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    /// Creates an error (memberwise).
    public init(code: Code, sqlState: String? = nil, message: String) {
        self.init(code, message, sqlState: sqlState)
    }

    /// Whether this is a unique violation (SQLSTATE `23505`).
    public var isUniqueViolation: Bool { sqlState == "23505" }

    /// `"postgres <code>: <message> [SQLSTATE xxxxx]"`.
    public var description: String {
        "postgres \(code.rawValue): \(message)" + (sqlState.map { " [SQLSTATE \($0)]" } ?? "")
    }
}

/// Something that runs SQL synchronously on one connection: what ``PostgresClient/withConnection(_:)`` and
/// ``PostgresClient/withTransaction(_:)`` hand their body. Only valid inside that body, on its thread.
public protocol PostgresQuerying {
    /// Runs one statement (`$1…$n` placeholders, one value each) and waits for its result.
    /// - Throws: ``PostgresError``.
    func query(_ sql: String, _ parameters: [PostgresValue]) throws(PostgresError) -> PostgresResult
}

extension PostgresQuerying {
    /// Runs one statement without parameters.
    public func query(_ sql: String) throws(PostgresError) -> PostgresResult {
        try query(sql, [])
    }
}
