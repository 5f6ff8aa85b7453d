/// A user's pseudonym wherever data is shared between instances or kept outside the store: cache
/// keys in Redis, the per-user index of cache entries, the erasure log. The first 128 bits of
/// SHA-256 over a domain prefix and the id's UTF-8 bytes, as 32 lowercase hex digits.
///
/// Not a secret: ids are guessable and the store holds them in clear. What it buys is that a
/// shared layer never holds an id (a Redis `KEYS` lists no user), and that keys built from it
/// need no escaping.
public struct UserTag: Hashable, Sendable, CustomStringConvertible {
    public let hex: String

    public init(_ userID: String) {
        hex = String(SHA256.hash("soma-user\u{0}" + userID).hex.prefix(32))
    }

    /// A tag as stored (the erasure log); nil unless it is 32 lowercase hex digits.
    public init?(hex: String) {
        guard hex.utf8.count == 32, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else { return nil }
        self.hex = hex
    }

    public var description: String { hex }
}
