/// How the writer argues: premise → conclusion chains.
public struct ReasoningResult: Codable, Sendable, Equatable {
    public struct Chain: Codable, Sendable, Equatable {
        public var premises: [String]
        public var conclusion: String
        public var relation: String
        public var marker: String
        public var confidence: Double
    }

    public var chains: [Chain]
    /// Chain counts by relation (all five relations always present).
    public var patterns: [String: Int]
    /// `causal`, `deductive`, `evidence_based`, `dialectical`, `hypothetical`, `mixed` or `descriptive`.
    public var style: String
    /// The longest run of chains where one's conclusion is the next one's premise.
    public var depth: Int
}

/// The five argument relations.
public enum Relation: String, CaseIterable, Codable, Sendable {
    case causal, conditional, contrastive, inferential, evidential
}

/// Finds discourse markers and inference templates and cuts premise and conclusion spans around
/// them, within a sentence or across sentences ("…. Therefore, …").
public struct ReasoningAnalyzer: Analyzer {
    public static let module = Module.reasoning
    public let model: ModuleModel

    enum Direction: String {
        case premiseAfter = "premise_after"
        case conclusionAfter = "conclusion_after"
        case conclusionSelf = "conclusion_self"
    }

    struct Marker {
        var relation: Relation
        var direction: Direction
        var confidence: Float
    }

    /// Per pattern, its marker (nil for patterns that are not argument markers).
    private let markers: [Marker?]
    /// Markers below this confidence need support (a clause break before them) to count.
    static let weakConfidence: Float = 0.45
    /// Chains listed in a result at most (see `Document.excerptTokens`).
    public static let maxChains = 64
    static let whetherVerbs: WordSet = [
        "wonder", "wondered", "wondering", "wonders", "ask", "asked", "asking", "asks", "see", "know", "knew",
        "sure", "unsure", "check", "checked", "decide", "tell", "doubt", "whether", "care",
    ]
    static let intensified: WordSet = [
        "much", "many", "far", "long", "often", "good", "bad", "tired", "happy", "sad", "glad", "sorry", "proud",
        "excited", "angry", "busy", "hard", "easy", "cold", "hot", "late", "early", "little", "few", "sure",
        "grateful", "lucky", "bored", "nervous", "beautiful", "cute", "funny", "weird", "big", "small", "close",
    ]
    static let subjectStarts: WordSet = [
        "i", "we", "you", "he", "she", "they", "it", "the", "this", "that", "there", "my", "our", "his", "her",
        "their", "everyone", "nobody", "i'm", "we're", "it's", "they're", "he's", "she's", "i've", "i'll", "we'll", "a", "an",
    ]

    public init(model: ModuleModel) {
        self.model = model
        var markers = [Marker?](repeating: nil, count: model.patterns.count)
        for (i, p) in model.patterns.enumerated() {
            let parts = p.label.split(separator: ":")
            guard parts.count == 2, let r = Relation(rawValue: String(parts[0])), let d = Direction(rawValue: String(parts[1])) else { continue }
            let c = model.weights[i, 0]
            markers[i] = Marker(relation: r, direction: d, confidence: c == 0 ? 0.7 : c)
        }
        self.markers = markers
    }

    struct Found {
        var range: Range<Int>
        var sentence: Int
        var marker: Marker
        var premises: [Range<Int>]
        var conclusion: Range<Int>
        var confidence: Float
    }

    public func analyze(_ doc: Document) -> ReasoningResult {
        let ids = model.matcher.tokenIDs(doc)
        // What the <AGENT> slot accepts: a pronoun anywhere, a capitalised word after a sentence's first token.
        var agentLike = [Bool](repeating: false, count: doc.tokens.count)
        for sentence in doc.sentences {
            for i in sentence {
                agentLike[i] = doc.closed[i].contains(.pronoun) || (doc.tokens[i].isCapitalized && i > sentence.lowerBound)
            }
        }
        var found: [Found] = []
        for (s, sentence) in doc.sentences.enumerated() {
            let hits = model.matcher.longestMatches(
                in: doc, ids: ids, range: sentence, isAgent: { agentLike[$0] }, accept: { markers[$0] != nil })
            var seen: Set<Range<Int>> = []
            for hit in hits {
                guard let marker = markers[hit.pattern], !seen.contains(hit.range) else { continue }
                guard accept(doc, hit.range, marker, sentence: sentence, all: hits) else { continue }
                seen.insert(hit.range)
                if let chain = spans(doc, hit.range, marker, sentenceIndex: s, hits: hits) {
                    found.append(chain)
                }
            }
        }
        var patterns: [String: Int] = [:]
        for r in Relation.allCases { patterns[r.rawValue] = 0 }
        for f in found { patterns[f.marker.relation.rawValue, default: 0] += 1 }
        // Every chain counts in `patterns`, `style` and `depth`; the first `maxChains` are listed.
        let chains = found.prefix(Self.maxChains).map { f in
            ReasoningResult.Chain(
                premises: f.premises.map { doc.excerpt(of: $0) }.filter { !$0.isEmpty },
                conclusion: doc.excerpt(of: f.conclusion),
                relation: f.marker.relation.rawValue,
                marker: doc.text(of: f.range).lowercased(),
                confidence: rounded(f.confidence)
            )
        }
        return ReasoningResult(chains: chains, patterns: patterns, style: Self.style(patterns), depth: Self.depth(found))
    }

    /// Filters readings of ambiguous markers that are not argument relations.
    func accept(_ doc: Document, _ range: Range<Int>, _ marker: Marker, sentence: Range<Int>, all: [PatternMatcher.Match]) -> Bool {
        let first = doc.tokens[range.lowerBound].lower
        let previous = range.lowerBound > sentence.lowerBound ? doc.tokens[range.lowerBound - 1] : nil
        let next = range.upperBound < sentence.upperBound ? doc.tokens[range.upperBound] : nil
        let atStart = range.lowerBound == sentence.lowerBound || previous?.isClauseBreak == true || previous?.isQuote == true
        switch (first, range.count) {
        case ("so", 1):
            // "so tired", "so much": an intensifier, not a consequence.
            if let next, Self.intensified.contains(next) || next.lowerEnds(with: "ly") { return false }
            if let next, next.lower == "far" || next.lower == "i" && previous == nil { return atStart || next.lower == "i" }
            guard atStart || (next.map { Self.subjectStarts.contains($0) } ?? false) else { return false }
        case ("since", 1):
            // "since 2010", "since then", "since last year", "ever since": time, not cause.
            if let next,
                next.kind == .number
                    || ["then", "last", "childhood", "yesterday", "monday", "january", "the", "high", "college", "we", "i"].contains(next.lower) && !atStart
            {
                if next.kind == .number || ["then", "last", "childhood", "yesterday"].contains(next.lower) { return false }
            }
            if previous?.lower == "ever" { return false }
            if let previous, ["lived", "been", "known", "worked", "waited", "passed", "changed"].contains(previous.lower) { return false }
        case ("if", 1), ("whether", 1):
            if let previous, Self.whetherVerbs.contains(previous) { return false }
            if next?.lower == "only" && first == "if" { return true }
        case ("but", 1):
            if let previous, ["nothing", "all", "anything", "anyone", "everyone", "none", "cannot", "can't", "couldn't"].contains(previous.lower) {
                return false
            }
        case ("then", 1):
            // "then" is a conditional consequent only after an "if" in the same sentence.
            return all.contains {
                $0.range.upperBound <= range.lowerBound && (doc.tokens[$0.range.lowerBound].lower == "if" || doc.tokens[$0.range.lowerBound].lower == "unless")
            }
        case ("still", 1), ("while", 1), ("as", 1), ("yet", 1):
            if first == "yet" && (previous.map { ["not", "haven't", "hasn't", "isn't", "aren't", "didn't"].contains($0.lower) } ?? false) { return false }
            if first == "yet", next?.kind == .punctuation { return false }
            if first == "still" && !atStart { return false }
            if first == "while" && !atStart { return false }
            if first == "as" && !atStart { return false }
        default:
            break
        }
        if marker.confidence < Self.weakConfidence && !atStart { return false }
        return true
    }

    func spans(_ doc: Document, _ range: Range<Int>, _ marker: Marker, sentenceIndex s: Int, hits: [PatternMatcher.Match]) -> Found? {
        let sentence = doc.sentences[s]
        let previousSentence = s > 0 ? doc.sentences[s - 1] : nil
        var lead = sentence.lowerBound
        while lead < sentence.upperBound && (doc.tokens[lead].isQuote || doc.tokens[lead].kind == .punctuation) { lead += 1 }
        let opensSentence = range.lowerBound <= lead
        // The clause the marker sits in, and the text after it to the next marker or clause end.
        let after = range.upperBound..<endOfSpan(doc, from: range.upperBound, in: sentence, stopAtComma: opensSentence)
        var premises: [Range<Int>] = []
        var conclusion: Range<Int>
        switch marker.direction {
        case .premiseAfter:
            if opensSentence {
                // "Because X, Y." / "If X, then Y." / "According to X, Y."
                var rest = after.upperBound
                while rest < sentence.upperBound && (doc.tokens[rest].isClauseBreak || doc.tokens[rest].lower == "then") { rest += 1 }
                if rest < sentence.upperBound {
                    premises = [after]
                    conclusion = rest..<sentence.upperBound
                } else if let previousSentence {
                    premises = [after]
                    conclusion = previousSentence
                } else {
                    premises = [after]
                    conclusion = after.upperBound..<after.upperBound
                }
            } else {
                premises = [range.upperBound..<sentence.upperBound]
                conclusion = sentence.lowerBound..<range.lowerBound
            }
        case .conclusionAfter:
            if opensSentence && marker.relation == .evidential {
                // "Experts say X." / "I read that X.": the source is the premise.
                premises = [range]
                conclusion = range.upperBound..<sentence.upperBound
            } else if opensSentence {
                guard let previousSentence else { return nil }
                premises = [previousSentence]
                conclusion = range.upperBound..<sentence.upperBound
            } else {
                premises = [startOfSpan(doc, before: range.lowerBound, in: sentence, hits: hits)..<range.lowerBound]
                conclusion = range.upperBound..<sentence.upperBound
            }
        case .conclusionSelf:
            let clauses = doc.clauses(in: sentence)
            let index = clauses.firstIndex { $0.contains(range.lowerBound) } ?? 0
            conclusion = clauses.isEmpty ? sentence : clauses[index].lowerBound..<sentence.upperBound
            if index > 0 {
                premises = [clauses[index - 1]]
            } else if let previousSentence {
                premises = [previousSentence]
            }
        }
        let words = premises.reduce(0) { $0 + wordCount(doc, $1) }
        guard wordCount(doc, conclusion) > 0 || words > 0 else { return nil }
        var confidence = marker.confidence
        if words == 0 || wordCount(doc, conclusion) == 0 { confidence *= 0.6 }
        return Found(range: range, sentence: s, marker: marker, premises: premises, conclusion: conclusion, confidence: confidence)
    }

    func endOfSpan(_ doc: Document, from: Int, in sentence: Range<Int>, stopAtComma: Bool) -> Int {
        var i = from
        while i < sentence.upperBound {
            let t = doc.tokens[i]
            if t.isTerminal { break }
            if stopAtComma && t.isClauseBreak { break }
            i += 1
        }
        return i
    }

    func startOfSpan(_ doc: Document, before index: Int, in sentence: Range<Int>, hits: [PatternMatcher.Match]) -> Int {
        // The premise of "X so Y" starts after the previous marker in the sentence, if any.
        var start = sentence.lowerBound
        for h in hits where h.range.upperBound <= index && markers[h.pattern] != nil {
            start = max(start, h.range.upperBound)
        }
        return start
    }

    func wordCount(_ doc: Document, _ range: Range<Int>) -> Int {
        range.reduce(0) { $0 + (doc.tokens[$1].isWord ? 1 : 0) }
    }

    static func style(_ patterns: [String: Int]) -> String {
        let top = patterns.values.max() ?? 0
        guard top > 0 else { return "descriptive" }
        let leaders = Relation.allCases.filter { patterns[$0.rawValue] == top }
        guard leaders.count == 1 else { return "mixed" }
        switch leaders[0] {
        case .causal: return "causal"
        case .conditional: return "hypothetical"
        case .contrastive: return "dialectical"
        case .inferential: return "deductive"
        case .evidential: return "evidence_based"
        }
    }

    /// Longest path through chains linked conclusion → premise (token spans overlapping).
    static func depth(_ found: [Found]) -> Int {
        guard !found.isEmpty else { return 0 }
        var best = [Int](repeating: 1, count: found.count)
        for j in found.indices {
            for i in 0..<j
            where found[i].conclusion.overlaps(found[j].premises.first ?? 0..<0) || found[j].premises.contains(where: { $0.overlaps(found[i].conclusion) }) {
                best[j] = max(best[j], best[i] + 1)
            }
        }
        return best.max()!
    }
}
