/// The common shape of a JSON Lines input line, read without Foundation: one object whose members
/// are `"text"` (a string) and at most an `"id"` that is an integer of up to 15 digits, a string of
/// printable ASCII without escapes, or `null`.
///
/// `parse` answers nil for anything else: other members, duplicate keys, other id forms, invalid
/// JSON. The caller then takes the general path (Foundation's parser), which handles every line
/// and reports errors; this path exists only because that parser and its writer were a fifth of
/// `soma analyze --jsonl`'s CPU (docs/PERFORMANCE.md, "Engine speed"). For the lines it accepts
/// it answers exactly what the general path answers (TextLineTests checks both on the same lines).
public struct TextLine: Equatable, Sendable {
    /// The id as it must be echoed: its JSON bytes, `null` when the line had none.
    public var idJSON: [UInt8]
    public var text: String

    /// Parses `line`. Its only bytes outside ASCII can be in the text, which is validated as UTF-8
    /// (nil when it is not: the general path reports where), so the line needs no validation first.
    public static func parse(_ line: UnsafeBufferPointer<UInt8>) -> TextLine? {
        var scanner = Scanner(bytes: line)
        return scanner.line()
    }

    /// The output line for these results, `{"id":…,"results":…}` (keys in the general path's
    /// sorted order), the results written straight into it: what `soma analyze --jsonl` writes.
    public func output(_ results: AnalysisResults) -> [UInt8] {
        var w = JSONWriter(capacity: 2048 + idJSON.count)
        w.beginObject()
        w.field("id"); w.raw(idJSON)
        w.field("results"); results.write(to: &w)
        w.endObject()
        return w.bytes
    }

    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        }

        mutating func consume(_ b: UInt8) -> Bool {
            skipSpace()
            guard i < bytes.count, bytes[i] == b else { return false }
            i += 1
            return true
        }

        mutating func line() -> TextLine? {
            guard consume(UInt8(ascii: "{")) else { return nil }
            var id: [UInt8]?
            var text: String?
            while true {
                guard consume(UInt8(ascii: "\"")) else { return nil }
                guard let key = rawString() else { return nil }
                guard consume(UInt8(ascii: ":")) else { return nil }
                skipSpace()
                if key.elementsEqual("text".utf8) {
                    guard text == nil, consume(UInt8(ascii: "\"")), let value = string() else { return nil }
                    text = value
                } else if key.elementsEqual("id".utf8) {
                    guard id == nil, let value = idValue() else { return nil }
                    id = value
                } else {
                    return nil
                }
                if consume(UInt8(ascii: ",")) { continue }
                guard consume(UInt8(ascii: "}")) else { return nil }
                break
            }
            skipSpace()
            guard i == bytes.count, let text else { return nil }
            return TextLine(idJSON: id ?? Array("null".utf8), text: text)
        }

        /// A string's bytes when it holds no escape (after the opening quote; consumes the closing one).
        mutating func rawString() -> UnsafeBufferPointer<UInt8>? {
            let start = i
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    i += 1
                    return UnsafeBufferPointer(rebasing: bytes[start..<(i - 1)])
                }
                if b == UInt8(ascii: "\\") || b < 0x20 { return nil }
                i += 1
            }
            return nil
        }

        mutating func idValue() -> [UInt8]? {
            guard i < bytes.count else { return nil }
            let start = i
            switch bytes[i] {
            case UInt8(ascii: "n"):
                guard bytes.count - i >= 4, bytes[i + 1] == UInt8(ascii: "u"), bytes[i + 2] == UInt8(ascii: "l"), bytes[i + 3] == UInt8(ascii: "l")
                else { return nil }
                i += 4
                return Array("null".utf8)
            case UInt8(ascii: "\""):
                i += 1
                guard let raw = rawString(), raw.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
                return Array(bytes[start..<i])
            default:
                if bytes[i] == UInt8(ascii: "-") { i += 1 }
                let digits = i
                while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
                let n = i - digits
                // No leading zero, no "-0", no fraction or exponent, small enough to stay an exact integer.
                guard n >= 1, n <= 15, bytes[digits] != UInt8(ascii: "0") || (n == 1 && digits == start) else { return nil }
                if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                    return nil
                }
                return Array(bytes[start..<i])
            }
        }

        /// A string value with its escapes decoded (after the opening quote).
        mutating func string() -> String? {
            var out: [UInt8] = []
            var run = i
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    if out.isEmpty {
                        let s = String(validating: UnsafeBufferPointer(rebasing: bytes[run..<i]), as: UTF8.self)
                        i += 1
                        return s
                    }
                    out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
                    i += 1
                    return String(validating: out, as: UTF8.self)
                }
                if b < 0x20 { return nil }
                guard b == UInt8(ascii: "\\") else {
                    i += 1
                    continue
                }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
                i += 1
                guard i < bytes.count else { return nil }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(scalar) {
                        // A high surrogate must be followed by an escaped low one.
                        guard bytes.count - i >= 2, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else { return nil }
                        i += 2
                        guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        return nil
                    }
                    guard let u = Unicode.Scalar(scalar) else { return nil }
                    out.append(contentsOf: UTF8.encode(u)!)
                default:
                    return nil
                }
                run = i
            }
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard bytes.count - i >= 4 else { return nil }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[i]
                let d: UInt8
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = b - UInt8(ascii: "A") + 10
                default: return nil
                }
                v = v << 4 | UInt32(d)
                i += 1
            }
            return v
        }
    }
}
