/// A normalised, tokenised text split into sentences: what every analyser reads.
public struct Document: Sendable {
    /// The normalised text.
    public let text: String
    public let tokens: [Token]
    /// Token ranges, one per sentence, in order.
    public let sentences: [Range<Int>]
    /// For each token, the index of its sentence.
    public let sentenceOfToken: [Int]
    /// For each token, whether it stands inside double quotes (direct speech).
    public let quoted: [Bool]
    /// For each token, the closed-class lists its word is on (`ClosedClass`).
    public let closed: [ClosedClass]

    public init(text: String, tokens: [Token], sentences: [Range<Int>]) {
        self.text = text
        self.tokens = tokens
        self.sentences = sentences
        var owner = [Int](repeating: 0, count: tokens.count)
        for (index, range) in sentences.enumerated() {
            for t in range { owner[t] = index }
        }
        sentenceOfToken = owner
        var inQuote = false
        var quoted = [Bool](repeating: false, count: tokens.count)
        var closed = [ClosedClass](repeating: [], count: tokens.count)
        // Tokens read in place: a copy of each would retain and release its two Strings.
        tokens.withUnsafeBufferPointer { tokens in
            for i in tokens.indices {
                closed[i] = ClosedClass.of(tokens[i])
                if tokens[i].lower == "\"" {
                    inQuote.toggle()
                    continue
                }
                if tokens[i].startsParagraph { inQuote = false }
                quoted[i] = inQuote
            }
        }
        self.quoted = quoted
        self.closed = closed
    }

    public var isEmpty: Bool { tokens.isEmpty }

    /// The text a token range covers, from the first token's start to the last token's end.
    public func text(of range: Range<Int>) -> String {
        guard !range.isEmpty else { return "" }
        let utf8 = text.utf8
        let from = utf8.index(utf8.startIndex, offsetBy: tokens[range.lowerBound].utf8Range.lowerBound)
        let to = utf8.index(utf8.startIndex, offsetBy: tokens[range.upperBound - 1].utf8Range.upperBound)
        return String(text[from..<to])
    }

    /// Like `text(of:)` but without leading and trailing punctuation tokens.
    /// Tokens a span quoted in a result may hold (a premise, a conclusion, a state's content):
    /// with results also capped in number, what a result holds stays bounded however many
    /// markers a text repeats (a sentence of 2,000 "but"s must not answer megabytes).
    public static let excerptTokens = 48

    /// `trimmedText(of:)` of at most `limit` tokens, ending in "…" when cut.
    public func excerpt(of range: Range<Int>, limit: Int = Document.excerptTokens) -> String {
        guard range.count > limit else { return trimmedText(of: range) }
        return trimmedText(of: range.lowerBound..<(range.lowerBound + limit)) + "…"
    }

    public func trimmedText(of range: Range<Int>) -> String {
        var lo = range.lowerBound
        var hi = range.upperBound
        while lo < hi && (tokens[lo].kind == .punctuation) { lo += 1 }
        while hi > lo && (tokens[hi - 1].kind == .punctuation) { hi -= 1 }
        return text(of: lo..<hi)
    }

    /// Clause ranges inside a sentence, split at commas, semicolons, colons and dashes.
    public func clauses(in sentence: Range<Int>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = sentence.lowerBound
        for i in sentence where tokens[i].isClauseBreak {
            if i > start { result.append(start..<i) }
            start = i + 1
        }
        if start < sentence.upperBound { result.append(start..<sentence.upperBound) }
        return result
    }
}

/// Normalisation, tokenisation and sentence splitting in one call: the shared front of every
/// analysis.
public struct TextPipeline: Sendable {
    let tokenizer = Tokenizer()
    let splitter = SentenceSplitter()

    public init() {}

    public func process(_ text: String) -> Document {
        process(normalized: TextNormalizer.normalize(text))
    }

    /// The same for a text already passed through `TextNormalizer.normalize` (the serving path
    /// normalises once for the cache key and the analysis).
    public func process(normalized: String) -> Document {
        let tokens = tokenizer.tokenize(normalized)
        return Document(text: normalized, tokens: tokens, sentences: splitter.split(tokens))
    }
}
