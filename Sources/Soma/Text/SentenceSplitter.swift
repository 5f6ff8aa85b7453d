/// Groups tokens into sentences.
///
/// A sentence ends at ".", "!", "?" (runs count once), or an ellipsis followed by a capital,
/// with closing quotes and brackets kept in the sentence they close. A period after a known
/// abbreviation ("Dr.", "Mrs.") or inside an initialism ("e.g.", "U.S.") ends a sentence only
/// when the abbreviation can end one and a capitalised word follows. Decimals never split (the
/// tokenizer keeps "3.5" whole). A paragraph break always ends a sentence; text without final
/// punctuation still forms a last sentence.
public struct SentenceSplitter: Sendable {
    /// Abbreviations after which a period never ends a sentence (titles and similar).
    static let neverTerminal: Set<String> = [
        "dr", "mr", "mrs", "ms", "mx", "prof", "sr", "jr", "st", "mt", "rev", "hon", "gen", "col", "lt",
        "sgt", "capt", "cpt", "maj", "cmdr", "gov", "sen", "rep", "pres", "fr", "vs", "v", "no", "nos",
        "fig", "figs", "approx", "dept", "est", "vol", "ch", "pp", "p", "ed", "eds", "cf", "al", "op",
        "e.g.", "i.e.", "cf.", "viz.", "ca", "c", "mme", "mlle", "messrs",
    ]
    /// Abbreviations that may also end a sentence when a capitalised word follows.
    static let sometimesTerminal: Set<String> = [
        "etc", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
        "oct", "nov", "dec", "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun",
        "a.m.", "p.m.", "u.s.", "u.k.", "u.n.", "e.u.", "ave", "blvd", "rd", "hwy", "min", "max", "hrs", "yrs",
    ]

    public init() {}

    public func split(_ tokens: [Token]) -> [Range<Int>] {
        // Tokens read in place: a copy of each would retain and release its two Strings.
        tokens.withUnsafeBufferPointer { split($0) }
    }

    /// The last UTF-8 byte of `word`, read in place (`utf8.last` walked the generic collection
    /// path, some 60 instructions a word: scripts/engine-profile.py).
    @inline(__always)
    static func lastByte(of word: String) -> UInt8? {
        word.utf8.withContiguousStorageIfAvailable { $0.last } ?? word.utf8.last
    }

    private func split(_ tokens: UnsafeBufferPointer<Token>) -> [Range<Int>] {
        var sentences: [Range<Int>] = []
        var start = 0
        var i = 0
        let n = tokens.count
        func close(at end: Int) {
            if end > start { sentences.append(start..<end) }
            start = end
        }
        while i < n {
            if i > start && tokens[i].startsParagraph {
                close(at: i)
            }
            // (A word holds a period only as an initialism's, so its last byte tells.)
            if tokens[i].kind == .word, Self.lastByte(of: tokens[i].lower) == UInt8(ascii: "."), tokens[i].lower.count > 2 {
                // Initialism carrying its own final period.
                if Self.neverTerminal.contains(tokens[i].lower) || !nextIsCapitalized(tokens, i + 1) {
                    i += 1
                    continue
                }
                close(at: i + 1)
                i += 1
                continue
            }
            guard tokens[i].isTerminal else {
                i += 1
                continue
            }
            if tokens[i].lower == "." && i > start && tokens[i - 1].kind == .word {
                let previous = tokens[i - 1].lower
                if Self.neverTerminal.contains(previous) {
                    i += 1
                    continue
                }
                if Self.sometimesTerminal.contains(previous) && !nextIsCapitalized(tokens, i + 1) {
                    i += 1
                    continue
                }
                // A single capital letter followed by a period is a middle initial ("John F. Kennedy").
                if tokens[i - 1].text.unicodeScalars.count == 1 && tokens[i - 1].isCapitalized && nextIsCapitalized(tokens, i + 1) && i + 1 < n
                    && !tokens[i + 1].startsParagraph
                {
                    i += 1
                    continue
                }
            }
            if (tokens[i].lower == "..." || tokens[i].lower == "…") && i + 1 < n && !nextIsCapitalized(tokens, i + 1) {
                i += 1
                continue
            }
            // Runs of terminal punctuation ("?!", "!!!") and closing quotes/brackets stay with the sentence.
            var end = i + 1
            while end < n && !tokens[end].startsParagraph
                && (tokens[end].isTerminal || tokens[end].lower == "\"" || tokens[end].lower == "'" || tokens[end].lower == ")" || tokens[end].lower == "]")
            {
                // An opening quote of the next sentence is not a closing one: stop when a quote is followed by a capital with no space rule available.
                if tokens[end].isQuote && tokens[end].range.lowerBound > tokens[end - 1].range.upperBound {
                    break
                }
                end += 1
            }
            // Dialogue: '"Stop!" she said.' continues after the closing quote with a lower-case word.
            if end > i + 1, tokens[end - 1].isQuote, end < n, tokens[end].isWord, !tokens[end].isCapitalized, !tokens[end].startsParagraph {
                i = end
                continue
            }
            close(at: end)
            i = end
        }
        close(at: n)
        return sentences
    }

    private func nextIsCapitalized(_ tokens: UnsafeBufferPointer<Token>, _ index: Int) -> Bool {
        var k = index
        while k < tokens.count && tokens[k].isQuote { k += 1 }
        guard k < tokens.count else { return true }
        return tokens[k].isCapitalized || tokens[k].kind == .number || tokens[k].kind == .emoji
    }
}
