/// Splits normalised text into tokens, working on Unicode scalars (no regular expressions).
///
/// Contractions and hyphenated words stay one token ("don't", "self-aware"); numbers with
/// decimal or thousands separators stay one token ("3.5", "1,000"); initialisms keep their
/// periods ("U.S.", "e.g."); URLs, emoji sequences (ZWJ, skin tones, flags, keycaps) and ASCII
/// emoticons are one token each.
public struct Tokenizer: Sendable {
    public init() {}

    /// ASCII emoticons, longest first so that ":-((" wins over ":-(".
    static let emoticons: [[Unicode.Scalar]] = [
        ":'-(", ":'-)", ">:-(", ">:(", ":-))", ":-((", ":'(", ":')", ":-)", ":-(", ":-d", ":-p", ":-/", ":-|",
        ":-o", ":-*", ";-)", "^_^", "-_-", "t_t", "</3", ":))", ":((", ":)", ":(", ":d", ":p", ":/", ":|",
        ":o", ":*", ";)", "=)", "=(", "<3", "xd", ":3", "d:", ":s", ":-s", ":@", "o_o", "8-)", "b-)",
    ].map { Array(String($0).unicodeScalars) }.sorted { $0.count > $1.count }

    /// `emoticons` grouped by first scalar (ASCII), in the same order: only these can match there.
    static let emoticonsByFirst: [[[Unicode.Scalar]]] = (0..<128).map { c in emoticons.filter { $0[0].value == c } }

    /// The first two scalars (as `first << 8 | second`) of the emoticons that open with two word
    /// scalars ("xd"): any other word start ("the", "do", "box") is no emoticon, known without
    /// trying the list.
    static let wordPairOpenings: [UInt32] = emoticons.filter { $0.count > 1 && isWordScalar($0[0]) && isWordScalar($0[1]) }.map {
        $0[0].value << 8 | $0[1].value
    }

    public func tokenize(_ text: String) -> [Token] {
        // Scalars and their UTF-8 offsets in one pass (`Array(text.unicodeScalars)` walks the
        // text twice: once to count, once to copy).
        let bytes = Array(text.utf8)
        let scalars: [Unicode.Scalar]
        let utf8Offsets: [Int]
        if bytes.allSatisfy({ $0 < 0x80 }) {
            // ASCII (most texts): a scalar per byte, and a scalar's offset is its byte's. Decoding
            // and appending scalar by scalar cost about 20 instructions a byte more.
            scalars = bytes.map { Unicode.Scalar($0) }
            utf8Offsets = Array(0...bytes.count)
        } else {
            var all: [Unicode.Scalar] = []
            all.reserveCapacity(bytes.count)
            var offsets: [Int] = [0]
            offsets.reserveCapacity(bytes.count + 1)
            var offset = 0
            for c in text.unicodeScalars {
                all.append(c)
                offset += UTF8.width(c)
                offsets.append(offset)
            }
            scalars = all
            utf8Offsets = offsets
        }
        var tokens: [Token] = []
        tokens.reserveCapacity(scalars.count / 4)
        var i = 0
        var newlines = 0
        let n = scalars.count
        while i < n {
            let c = scalars[i]
            if Self.isSpace(c) {
                if c == "\n" { newlines += 1 }
                i += 1
                continue
            }
            let paragraph = newlines >= 2
            newlines = 0
            let atBoundary = i == 0 || Self.isSpace(scalars[i - 1]) || Self.isOpening(scalars[i - 1])
            var end: Int
            var kind: Token.Kind
            if let urlEnd = Self.matchURL(scalars, at: i) {
                end = urlEnd
                kind = .url
            } else if atBoundary, let emoticonEnd = Self.matchEmoticon(scalars, at: i) {
                end = emoticonEnd
                kind = .emoticon
            } else if Self.isWordScalar(c) {
                (end, kind) = Self.scanWord(scalars, at: i)
            } else if Self.isEmojiStart(scalars, at: i) {
                end = Self.scanEmoji(scalars, at: i)
                kind = .emoji
            } else if c == "." || c == "…" {
                end = i + 1
                if c == "." { while end < n && scalars[end] == "." { end += 1 } }
                kind = .punctuation
            } else if c == "-" && i + 1 < n && scalars[i + 1] == "-" {
                end = i + 2
                while end < n && scalars[end] == "-" { end += 1 }
                kind = .punctuation
            } else if Self.isPunctuation(c) {
                end = i + 1
                kind = .punctuation
            } else {
                end = i + 1
                kind = .symbol
            }
            tokens.append(Self.makeToken(scalars, bytes, i..<end, utf8: utf8Offsets[i]..<utf8Offsets[end], kind: kind, paragraph: paragraph))
            i = end
        }
        return tokens
    }

    // MARK: - Scanners

    // The character classes: an ASCII scalar is decided inline; any other asks the Unicode
    // properties in a function of its own. With the property look-ups in the same body, every
    // call paid for their type metadata accessors first, ASCII or not: about 95 instructions a call
    // for `isWordScalar`, called for nearly every scalar (scripts/engine-profile.py).

    @inline(__always)
    static func isSpace(_ c: Unicode.Scalar) -> Bool {
        if c.isASCII {
            let v = c.value
            return v == 0x20 || (v >= 0x09 && v <= 0x0D)
        }
        return isSpaceBeyondASCII(c)
    }

    @inline(never)
    static func isSpaceBeyondASCII(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }

    @inline(__always)
    static func isPunctuation(_ c: Unicode.Scalar) -> Bool {
        c.isASCII ? asciiPunctuation[Int(c.value)] : isPunctuationByCategory(c)
    }

    /// `isPunctuationByCategory` of each ASCII scalar, computed from the same properties.
    static let asciiPunctuation: [Bool] = (0..<128).map { isPunctuationByCategory(Unicode.Scalar(UInt8($0))) }

    @inline(never)
    static func isPunctuationByCategory(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    @inline(__always)
    static func isOpening(_ c: Unicode.Scalar) -> Bool {
        c == "(" || c == "[" || c == "\"" || c == "'"
    }

    @inline(__always)
    static func isWordScalar(_ c: Unicode.Scalar) -> Bool {
        if c.isASCII {
            let v = c.value
            return (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A)
        }
        return isWordScalarBeyondASCII(c)
    }

    @inline(never)
    static func isWordScalarBeyondASCII(_ c: Unicode.Scalar) -> Bool {
        let p = c.properties
        return p.isAlphabetic || p.numericType != nil
    }

    @inline(__always)
    static func isLetter(_ c: Unicode.Scalar) -> Bool {
        if c.isASCII {
            let v = c.value | 0x20
            return v >= 0x61 && v <= 0x7A
        }
        return isLetterBeyondASCII(c)
    }

    @inline(never)
    static func isLetterBeyondASCII(_ c: Unicode.Scalar) -> Bool { c.properties.isAlphabetic }

    @inline(__always)
    static func isDigit(_ c: Unicode.Scalar) -> Bool { c.value >= 0x30 && c.value <= 0x39 }

    @inline(__always)
    static func isMark(_ c: Unicode.Scalar) -> Bool {
        c.isASCII ? false : isMarkBeyondASCII(c)
    }

    @inline(never)
    static func isMarkBeyondASCII(_ c: Unicode.Scalar) -> Bool {
        switch c.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }

    /// A word, number, contraction, hyphenated compound or initialism starting at `start`.
    static func scanWord(_ s: [Unicode.Scalar], at start: Int) -> (Int, Token.Kind) {
        let n = s.count
        var i = start
        var sawLetter = false
        while i < n {
            let c = s[i]
            if isWordScalar(c) || isMark(c) {
                if isLetter(c) { sawLetter = true }
                i += 1
                continue
            }
            guard i + 1 < n else { break }
            let next = s[i + 1]
            if c == "'" && isLetter(next) && i > start && isLetter(s[i - 1]) {
                i += 1  // contraction or possessive: don't, she's, o'clock
            } else if (c == "-" || c == "/") && isWordScalar(next) && c == "-" {
                i += 1  // hyphenated compound
            } else if (c == "." || c == "," || c == ":") && isDigit(next) && i > start && isDigit(s[i - 1]) && !sawLetter {
                i += 1  // 3.5, 1,000, 10:30
            } else if c == "." && isLetter(next) && i - start == 1 && isLetter(s[start]) {
                // Initialism: single letters separated by periods (U.S., e.g., i.e., a.m.).
                var j = i
                while j + 1 < n && s[j] == "." && isLetter(s[j + 1]) && (j + 2 >= n || !isWordScalar(s[j + 2])) {
                    j += 2
                }
                if j + 1 <= n && j < n && s[j] == "." && j > i { return (j + 1, .word) }
                break
            } else {
                break
            }
        }
        return (i, sawLetter ? .word : .number)
    }

    /// Every prefix `matchURL` knows starts with h or w (either case): most tokens stop here,
    /// without a call.
    @inline(__always)
    static func matchURL(_ s: [Unicode.Scalar], at i: Int) -> Int? {
        let first = s[i].value | 0x20
        guard first == 0x68 || first == 0x77 else { return nil }
        return matchURLAfterFirst(s, at: i)
    }

    static func matchURLAfterFirst(_ s: [Unicode.Scalar], at i: Int) -> Int? {
        func hasPrefix(_ p: String) -> Bool {
            var k = i
            for c in p.unicodeScalars {
                guard k < s.count, s[k] == c || (s[k].isASCII && c.isASCII && s[k].value | 0x20 == c.value) else { return false }
                k += 1
            }
            return true
        }
        guard hasPrefix("http://") || hasPrefix("https://") || hasPrefix("www.") else { return nil }
        var end = i
        while end < s.count && !isSpace(s[end]) && s[end] != "\"" && s[end] != "<" && s[end] != ">" {
            end += 1
        }
        while end > i, ".,;:!?)]'".unicodeScalars.contains(s[end - 1]) { end -= 1 }
        return end > i + 4 ? end : nil
    }

    static func matchEmoticon(_ s: [Unicode.Scalar], at i: Int) -> Int? {
        let first = s[i]
        guard first.isASCII,
            !isWordScalar(first) || first == "x" || first == "X" || first == "d" || first == "D" || first == "8" || first == "b" || first == "B" || first == "t"
                || first == "T" || first == "o" || first == "O"
        else { return nil }
        let lowered = first.value >= 0x41 && first.value <= 0x5A ? first.value | 0x20 : first.value
        if isWordScalar(first), i + 1 < s.count, s[i + 1].isASCII, isWordScalar(s[i + 1]) {
            let second = s[i + 1].value >= 0x41 && s[i + 1].value <= 0x5A ? s[i + 1].value | 0x20 : s[i + 1].value
            guard wordPairOpenings.contains(lowered << 8 | second) else { return nil }
        }
        outer: for e in emoticonsByFirst[Int(lowered)] {
            guard i + e.count <= s.count else { continue }
            for (k, c) in e.enumerated() {
                let a = s[i + k]
                let lowered = a.isASCII && a.value >= 0x41 && a.value <= 0x5A ? Unicode.Scalar(a.value | 0x20)! : a
                if lowered != c { continue outer }
            }
            let end = i + e.count
            // An emoticon must stand alone: whitespace, end, or punctuation after it.
            if end == s.count || isSpace(s[end]) || (!isWordScalar(s[end]) && s[end] != "'") {
                // Letters-only emoticons ("xd", "d:") need whitespace before and after to avoid words.
                if isLetter(e[0]) && end < s.count && !isSpace(s[end]) { continue }
                return end
            }
        }
        return nil
    }

    static func isEmojiStart(_ s: [Unicode.Scalar], at i: Int) -> Bool {
        let c = s[i]
        if c.isASCII { return false }
        let p = c.properties
        if p.isEmojiPresentation { return true }
        if p.isEmoji && !c.isASCII { return true }
        // Keycaps: 1️⃣ is handled by the word scanner for the digit; "#️⃣" here.
        return false
    }

    static func scanEmoji(_ s: [Unicode.Scalar], at start: Int) -> Int {
        var i = start
        let n = s.count
        // Regional indicator pairs make flags.
        if (0x1F1E6...0x1F1FF).contains(s[i].value) {
            if i + 1 < n && (0x1F1E6...0x1F1FF).contains(s[i + 1].value) { return i + 2 }
            return i + 1
        }
        i += 1
        while i < n {
            let v = s[i].value
            if v == 0xFE0F || v == 0xFE0E || (0x1F3FB...0x1F3FF).contains(v) || v == 0x20E3 || (0xE0020...0xE007F).contains(v) {
                i += 1
            } else if v == 0x200D && i + 1 < n && s[i + 1].properties.isEmoji {
                i += 2
            } else {
                break
            }
        }
        return i
    }

    /// 1 for an upper-case scalar, -1 for a lower-case one, 0 for any other (out of line, as the
    /// character classes above).
    @inline(never)
    static func caseBeyondASCII(_ c: Unicode.Scalar) -> Int {
        let p = c.properties
        guard p.isCased else { return 0 }
        if p.isUppercase { return 1 }
        return p.isLowercase ? -1 : 0
    }

    /// Builds a token. Its strings are decoded straight from the text's UTF-8 bytes, so words of up
    /// to 15 bytes are small strings stored inline (no allocation); ASCII is lower-cased byte-wise.
    static func makeToken(_ s: [Unicode.Scalar], _ bytes: [UInt8], _ range: Range<Int>, utf8: Range<Int>, kind: Token.Kind, paragraph: Bool) -> Token {
        let text = bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[utf8]), as: UTF8.self) }
        var upper = 0
        var lowerCount = 0
        for c in s[range] {
            if c.isASCII {
                let v = c.value
                if v >= 0x41 && v <= 0x5A { upper += 1 } else if v >= 0x61 && v <= 0x7A { lowerCount += 1 }
                continue
            }
            switch caseBeyondASCII(c) {
            case 1: upper += 1
            case -1: lowerCount += 1
            default: break
            }
        }
        let lower: String
        switch kind {
        case .emoji: lower = text
        case .word, .emoticon, .url:
            if upper == 0 {
                lower = text
            } else if utf8.count <= 64, bytes[utf8].allSatisfy({ $0 < 0x80 }) {
                lower = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: utf8.count) { buffer in
                    for (k, b) in bytes[utf8].enumerated() { buffer[k] = b >= 0x41 && b <= 0x5A ? b | 0x20 : b }
                    return String(decoding: buffer, as: UTF8.self)
                }
            } else {
                lower = text.lowercased()
            }
        default: lower = text
        }
        return Token(
            text: text,
            lower: lower,
            kind: kind,
            range: range,
            utf8Range: utf8,
            isAllCaps: kind == .word && upper >= 2 && lowerCount == 0,
            isCapitalized: kind == .word
                && (s[range.lowerBound].isASCII ? (0x41...0x5A).contains(s[range.lowerBound].value) : caseBeyondASCII(s[range.lowerBound]) == 1),
            startsParagraph: paragraph
        )
    }
}
