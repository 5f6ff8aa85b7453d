public import Foundation

/// The position after which the next page of a user's entries starts (keyset pagination).
///
/// Pages are ordered by `(createdAt DESC, id DESC)`, so the last entry of a page identifies where
/// the next one begins, whatever was inserted or deleted in between. Clients see only `encoded`: the
/// unpadded base64url of `"1:<created unix ms>:<id>"`, where `1` is the format version.
public struct EntryCursor: Sendable, Equatable {
    /// `createdAt` of the last entry already returned, in unix milliseconds.
    public var createdAtMilliseconds: Int64
    /// `id` of the last entry already returned.
    public var id: String

    /// The current (and only) format version.
    static let version = "1"
    /// Longer strings are rejected before decoding; an id is a 36-character UUID.
    static let maxEncodedLength = 512

    public init(createdAtMilliseconds: Int64, id: String) {
        self.createdAtMilliseconds = createdAtMilliseconds
        self.id = id
    }

    /// The cursor that continues after `entry`.
    public init(after entry: Entry) {
        self.init(createdAtMilliseconds: UnixMilliseconds.from(entry.createdAt), id: entry.id)
    }

    /// Decodes a cursor this type encoded; anything else throws `StoreError(.invalidCursor)`.
    public init(decoding string: String) throws(StoreError) {
        func invalid(_ why: String) -> StoreError { StoreError(.invalidCursor, "cursor \(why)") }
        guard !string.isEmpty, string.utf8.count <= Self.maxEncodedLength else { throw invalid("is empty or too long") }
        var base64 = String(string.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        base64 += String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
        guard !string.contains("="), !string.contains("+"), !string.contains("/"),
            let data = Data(base64Encoded: base64),
            let plain = String(validating: Array(data), as: UTF8.self)
        else { throw invalid("is not base64url text") }
        // Split on the bytes: as Characters, ":" followed by a combining mark is one grapheme and
        // an id starting with one would not round-trip.
        let parts = plain.utf8.split(separator: UInt8(ascii: ":"), maxSplits: 2, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard parts.count == 3, parts[0] == Self.version else { throw invalid("has an unknown format") }
        guard let milliseconds = Int64(parts[1]), !parts[2].isEmpty, !parts[2].utf8.contains(0) else {
            throw invalid("has a malformed position")
        }
        self.init(createdAtMilliseconds: milliseconds, id: parts[2])
        // Only the canonical spelling is one this type produced (no alternative digits or base64 bits).
        guard encoded == string else { throw invalid("is not canonical") }
    }

    /// The opaque string handed to clients.
    public var encoded: String {
        let plain = "\(Self.version):\(createdAtMilliseconds):\(id)"
        var base64 = Data(plain.utf8).base64EncodedString()
        while base64.hasSuffix("=") { base64.removeLast() }
        return String(base64.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
    }
}

/// Conversions between `Date` and the unix milliseconds stores keep.
public enum UnixMilliseconds {
    /// `date` as whole unix milliseconds, rounded to the nearest.
    public static func from(_ date: Date) -> Int64 {
        let milliseconds = (date.timeIntervalSince1970 * 1_000).rounded()
        return Int64(exactly: milliseconds) ?? (milliseconds < 0 ? .min : .max)
    }

    /// The date of `milliseconds` since 1970; `date(from(d)) == d` for every ms-rounded `d` made here.
    public static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1_000)
    }

    /// `date` rounded to the nearest millisecond, as stores return it.
    public static func rounded(_ date: Date) -> Date {
        Self.date(from(date))
    }
}
