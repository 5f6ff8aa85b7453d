/// One token of a document, as the tokenizer produced it.
public struct Token: Sendable, Hashable {
    public enum Kind: UInt8, Sendable {
        case word, number, punctuation, emoji, emoticon, url, symbol
    }

    /// The surface form, as written (after normalisation).
    public var text: String
    /// The form that lexicons are keyed by: lower-cased; emoji and emoticons as written.
    public var lower: String
    public var kind: Kind
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

    public var isWord: Bool { kind == .word }
    /// Sentence-ending punctuation.
    public var isTerminal: Bool {
        kind == .punctuation && (lower == "." || lower == "!" || lower == "?" || lower == "..." || lower == "…")
    }
    /// Punctuation that ends a clause inside a sentence.
    public var isClauseBreak: Bool {
        kind == .punctuation && (lower == "," || lower == ";" || lower == ":" || lower == "—" || lower == "–" || lower == "--" || lower == "(" || lower == ")")
    }
    public var isQuote: Bool { kind == .punctuation && (lower == "\"" || lower == "'") }
}
