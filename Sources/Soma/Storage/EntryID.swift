public import Foundation

/// Entry ids: UUIDv7 strings (RFC 9562), so ids generated later sort after earlier ones.
public enum EntryID {
    /// A new lowercase UUIDv7: 48-bit unix milliseconds of `now`, version 7, RFC variant, and 74
    /// random bits from `SystemRandomNumberGenerator`.
    public static func generate(now: Date = Date()) -> String {
        var random = SystemRandomNumberGenerator()
        return generate(now: now, using: &random)
    }

    /// `generate(now:)` drawing the random bits from `generator` (for reproducible tests).
    public static func generate(now: Date, using generator: inout some RandomNumberGenerator) -> String {
        let milliseconds = UInt64(clamping: max(0, UnixMilliseconds.from(now))) & 0xFFFF_FFFF_FFFF
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: milliseconds >> (40 - 8 * UInt64(i))) }
        for i in 6..<8 { bytes[i] = UInt8(truncatingIfNeeded: high >> (8 * UInt64(i))) }
        for i in 8..<16 { bytes[i] = UInt8(truncatingIfNeeded: low >> (8 * UInt64(i - 8))) }
        bytes[6] = 0x70 | (bytes[6] & 0x0F)
        bytes[8] = 0x80 | (bytes[8] & 0x3F)
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (i, byte) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { text.append(UInt8(ascii: "-")) }
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
