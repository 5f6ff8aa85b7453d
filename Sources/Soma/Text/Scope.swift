/// Negation scope and degree modifiers: the clause rules every analyser shares.
public enum Scope {
    /// Core English negators; models may add their own.
    public static let negators: WordSet = [
        "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "without", "cannot",
        "ain't", "aren't", "can't", "couldn't", "didn't", "doesn't", "don't", "hadn't", "hasn't", "haven't",
        "isn't", "mightn't", "mustn't", "needn't", "shan't", "shouldn't", "wasn't", "weren't", "won't",
        "wouldn't", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "cant", "couldnt",
        "wouldnt", "shouldnt", "havent", "hasnt", "hadnt", "aint", "n't", "rarely", "seldom", "hardly", "barely",
        "scarcely",
    ]

    /// Words that end a negation scope early: the clause turns ("I didn't go, but I loved it").
    static let scopeBreakers: WordSet = ["but", "however", "yet", "although", "though", "because", "and", "so", "while", "whereas"]

    /// The words that open and end a negation's scope: `Scope.negators` and the scope breakers,
    /// which every document marks (`Document.closed`), and the negators a model adds.
    public struct Words: Sendable {
        /// A model's negators that are not in `Scope.negators` (a word here is no scope breaker).
        fileprivate var extra: WordSet = []

        /// `Scope.negators` with the scope breakers.
        public static let standard = Words(adding: [])

        /// The standard words and `negators` besides.
        public init(adding negators: some Sequence<String>) {
            for w in negators where !Scope.negators.contains(w) && !Scope.scopeBreakers.contains(w) { extra.insert(w) }
        }
    }

    /// How far a negation reaches: VADER's three words.
    public static let window = 3

    /// For each token, whether a negator governs it: a negator within the `window` words before it in
    /// the same clause. "not only" and "no doubt" are idioms that do not negate.
    public static func negationMask(
        _ doc: Document,
        window: Int = Scope.window,
        words: Words = .standard
    ) -> [Bool] {
        var mask = [Bool](repeating: false, count: doc.tokens.count)
        doc.tokens.withUnsafeBufferPointer { tokens in
            for sentence in doc.sentences {
                var remaining = 0
                var i = sentence.lowerBound
                while i < sentence.upperBound {
                    if endsScope(doc, at: i) {
                        remaining = 0
                    } else if isNegator(doc, at: i, words: words) {
                        remaining = window
                    } else if remaining > 0 {
                        if tokens[i].isWord || tokens[i].kind == .emoji { mask[i] = true }
                        remaining -= 1
                    }
                    i += 1
                }
            }
        }
        return mask
    }

    /// Whether the token at `i` opens a negation scope (`negationMask`'s test).
    @inline(__always)
    public static func isNegator(_ doc: Document, at i: Int, words: Words = .standard) -> Bool {
        (doc.closed[i].contains(.negator) || words.extra.count > 0 && words.extra.contains(doc.tokens[i])) && !isIdiom(doc, at: i)
    }

    /// Whether the token at `i` ends a negation's scope: a clause break, a sentence end or a turn.
    @inline(__always)
    public static func endsScope(_ doc: Document, at i: Int) -> Bool {
        doc.tokens.withUnsafeBufferPointer { $0[i].isClauseBreak || $0[i].isTerminal } || doc.closed[i].contains(.scopeBreaker)
    }

    static func isIdiom(_ doc: Document, at i: Int) -> Bool {
        guard i + 1 < doc.tokens.count else { return false }
        let t = doc.tokens[i].lower
        let next = doc.tokens[i + 1].lower
        return (t == "not" && next == "only") || (t == "no" && (next == "doubt" || next == "wonder")) || (t == "without" && next == "doubt")
    }

    /// VADER's degree rule: a booster or dampener up to three words before a word scales it, by its
    /// scalar damped 5 % for the second word back and 10 % for the third.
    public static func degree(_ doc: Document, at index: Int, within sentence: Range<Int>, scalar: (Int) -> Float?) -> Float {
        var total: Float = 0
        var back = 1
        while back <= 3 && index - back >= sentence.lowerBound {
            let j = index - back
            if doc.tokens[j].isClauseBreak { break }
            if let s = scalar(j) {
                let damp: Float = back == 1 ? 1 : (back == 2 ? 0.95 : 0.9)
                total += s * damp
            }
            back += 1
        }
        return total
    }
}
