/// One token of a document, as the tokenizer produced it.
public struct Token: Sendable, Hashable {
    public enum Kind: UInt8, Sendable {
        case word, number, punctuation, emoji, emoticon, url, symbol
    }

    /// The surface form, as written (after normalisation).
    public var text: String
    /// The form that lexicons are keyed by: lower-cased; emoji and emoticons as written.
    public let lower: String
    /// `WordKey.of(lower)`, computed once: every table the analysers probe (`WordTable`) is keyed by it.
    public let key: UInt64
    public let kind: Kind
    /// Offsets in Unicode scalars into the normalised text.
    public var range: Range<Int>
    /// Offsets in UTF-8 bytes into the normalised text.
    public var utf8Range: Range<Int>
    /// A word of two or more letters written entirely in capitals ("NEVER").
    public var isAllCaps: Bool
    /// A word that starts with a capital letter.
    public var isCapitalized: Bool
    /// A blank line (paragraph break) stands before this token.
    public var startsParagraph: Bool

    public init(
        text: String, lower: String, kind: Kind, range: Range<Int>, utf8Range: Range<Int>, isAllCaps: Bool, isCapitalized: Bool,
        startsParagraph: Bool
    ) {
        self.text = text
        self.lower = lower
        // One pass over `lower`'s bytes for its key and whether it is ASCII letters.
        var key = FNV1a()
        var ascii = true
        var letters = true
        var word = lower
        word.withUTF8 { bytes in
            for b in bytes {
                key.mix(byte: b)
                if b >= 0x80 { ascii = false }
                let folded = b | 0x20
                if folded < UInt8(ascii: "a") || folded > UInt8(ascii: "z") { letters = false }
            }
        }
        self.key = key.value
        isASCII = ascii
        isAlphabetic = ascii ? letters : lower.unicodeScalars.allSatisfy { $0.properties.isAlphabetic }
        self.kind = kind
        isWord = kind == .word
        self.range = range
        self.utf8Range = utf8Range
        self.isAllCaps = isAllCaps
        self.isCapitalized = isCapitalized
        self.startsParagraph = startsParagraph
        // Punctuation is one to three bytes: compared as bytes, not as Strings (a String
        // comparison is a call per literal, and these run for every token of every text).
        var terminal = false
        var clauseBreak = false
        if kind == .punctuation {
            word.withUTF8 { b in
                switch b.count {
                case 1:
                    terminal = b[0] == UInt8(ascii: ".") || b[0] == UInt8(ascii: "!") || b[0] == UInt8(ascii: "?")
                    clauseBreak =
                        b[0] == UInt8(ascii: ",") || b[0] == UInt8(ascii: ";") || b[0] == UInt8(ascii: ":") || b[0] == UInt8(ascii: "(")
                        || b[0] == UInt8(ascii: ")")
                case 2:
                    clauseBreak = b[0] == UInt8(ascii: "-") && b[1] == UInt8(ascii: "-")
                case 3:
                    // "...", "…" (E2 80 A6); "—" (E2 80 94) and "–" (E2 80 93)
                    terminal = b.allSatisfy { $0 == UInt8(ascii: ".") } || (b[0] == 0xE2 && b[1] == 0x80 && b[2] == 0xA6)
                    clauseBreak = b[0] == 0xE2 && b[1] == 0x80 && (b[2] == 0x94 || b[2] == 0x93)
                default:
                    break
                }
            }
        }
        isTerminal = terminal
        isClauseBreak = clauseBreak
    }

    /// `kind == .word`, stored: asked of nearly every token by every analyser, and a computed
    /// property of an array's element copied the whole token (its two Strings retained and
    /// released) where a stored one is read in place (scripts/engine-profile.py).
    public let isWord: Bool
    /// `lower` is ASCII only.
    public let isASCII: Bool
    /// Every scalar of `lower` is alphabetic (a letter or a letter-like mark).
    public let isAlphabetic: Bool
    /// Sentence-ending punctuation (set once at creation: the analysers ask for every token).
    public let isTerminal: Bool
    /// Punctuation that ends a clause inside a sentence.
    public let isClauseBreak: Bool
    /// `lower.hasSuffix(suffix)` for an ASCII suffix: an ASCII word compares its last bytes (no
    /// Character segmentation), any other word its Characters, as `hasSuffix` does.
    @inline(__always)
    public func lowerEnds(with suffix: StaticString) -> Bool {
        guard isASCII else { return lower.hasSuffix(suffix.description) }
        // The bytes read in place: `utf8.suffix(n).elementsEqual` cost about 280 instructions a call
        // (scripts/engine-profile.py), and narrative's verb guess asks several suffixes per word.
        return suffix.withUTF8Buffer { tail in
            lower.utf8.withContiguousStorageIfAvailable { word in
                guard word.count >= tail.count else { return false }
                let start = word.count - tail.count
                for k in 0..<tail.count where word[start + k] != tail[k] { return false }
                return true
            } ?? lower.utf8.reversed().starts(with: tail.reversed())
        }
    }

    public var isQuote: Bool { kind == .punctuation && (lower == "\"" || lower == "'") }
}
