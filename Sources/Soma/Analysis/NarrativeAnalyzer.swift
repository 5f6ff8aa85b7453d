/// What story is told.
public struct NarrativeResult: Codable, Sendable, Equatable {
    public struct Event: Codable, Sendable, Equatable {
        /// Position in the text (0-based).
        public var index: Int
        /// Position in story time (0 = happened first), from tense and temporal cues.
        public var order: Int
        public var verb: String
        public var text: String
        /// past, past_perfect, present, present_perfect, future, modal or ambiguous.
        public var tense: String
        public var time: String?
    }

    public struct Arc: Codable, Sendable, Equatable {
        public var staging: [Double]
        public var plotProgression: [Double]
        public var cognitiveTension: [Double]

        enum CodingKeys: String, CodingKey {
            case staging
            case plotProgression = "plot_progression"
            case cognitiveTension = "cognitive_tension"
        }
    }

    /// Events in story order.
    public var events: [Event]
    public var characters: [String]
    public var arc: Arc
    /// first_person, third_person or mixed.
    public var perspective: String
    /// past, present, future or mixed.
    public var tense: String
}

/// Events from finite verb clauses, reordered by past perfect and temporal cues; tense and
/// perspective by vote outside direct speech; the arc as word-class densities over five segments.
public struct NarrativeAnalyzer: Analyzer {
    public static let module = Module.narrative
    public let model: ModuleModel
    let agents: AgentDetector
    static let segments = 5

    static let subjects: Set<String> = ["i", "you", "we", "they", "he", "she", "it", "people", "everyone", "who", "kids", "parents", "friends"]
    static let blockers: Set<String> = [
        "the", "a", "an", "my", "your", "his", "her", "our", "their", "its", "this", "that", "these", "those", "to",
        "of", "in", "on", "at", "for", "with", "some", "any", "no", "every", "each", "first", "last", "next", "new",
    ]
    static let pastBe: Set<String> = ["was", "were", "wasn't", "weren't"]
    static let presentBe: Set<String> = ["am", "is", "are", "isn't", "aren't", "i'm", "he's", "she's", "it's", "we're", "they're", "you're", "'m", "'re", "that's", "there's"]
    static let perfectPast: Set<String> = ["had", "hadn't", "i'd", "we'd", "he'd", "she'd", "they'd", "you'd"]
    static let perfectPresent: Set<String> = ["have", "has", "haven't", "hasn't", "i've", "we've", "they've", "you've"]
    static let copula: [String: String] = [
        "i'm": "am", "'m": "am", "he's": "is", "she's": "is", "it's": "is", "that's": "is", "there's": "is",
        "we're": "are", "they're": "are", "you're": "are", "'re": "are", "isn't": "is", "aren't": "are",
    ]
    static let doPast: Set<String> = ["did", "didn't"]
    static let doPresent: Set<String> = ["do", "does", "don't", "doesn't"]

    public init(model: ModuleModel) {
        self.model = model
        agents = AgentDetector(model: model)
    }

    struct Found {
        var index: Int
        var verb: String
        var clause: Range<Int>
        var tense: String
        var layer: Float
        var time: String?
    }

    func has(_ word: String, _ label: String) -> Bool { model.contains(word: word, label: label) }

    /// A verb form by the lexicon, or — for a word the model does not know at all — by its ending:
    /// the verb table then only sharpens the analysis, so pruning rare verb forms costs little.
    func isVerb(_ word: String, _ label: String) -> Bool {
        if has(word, label) { return true }
        let n = word.unicodeScalars.count
        guard n >= 4, word.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic }), !model.contains(word: word, labelPrefix: "") else { return false }
        switch label {
        case "verb.past": return word.hasSuffix("ed")
        case "verb.pp": return word.hasSuffix("ed") || word.hasSuffix("en")
        case "verb.ing": return word.hasSuffix("ing")
        case "verb.3sg": return word.hasSuffix("s") && !word.hasSuffix("ss") && !word.hasSuffix("us")
        case "verb.base": return !word.hasSuffix("ed") && !word.hasSuffix("ing") && !word.hasSuffix("ly") && !word.hasSuffix("s")
        default: return false
        }
    }

    public func analyze(_ doc: Document) -> NarrativeResult {
        let ids = model.matcher.tokenIDs(doc)
        let mentions = agents.agents(in: doc)
        var agentStart = [Bool](repeating: false, count: doc.tokens.count)
        for a in mentions { agentStart[a.range.lowerBound] = true }
        var events: [Found] = []
        var first = 0, second = 0, third = 0
        for sentence in doc.sentences {
            let temporal = model.matcher.longestMatches(in: doc, ids: ids, range: sentence, isAgent: { agentStart[$0] }, accept: { model.patterns[$0].label == "temporal" })
                .filter { !doc.quoted[$0.range.lowerBound] }
            var sentenceLayer = 0
            for t in temporal where model.weight(t.pattern, "order") < 0 { sentenceLayer = -1 }
            let clauses = doc.clauses(in: sentence).flatMap { subclauses(doc, $0) }
            for clause in clauses {
                var i = clause.lowerBound
                while i < clause.upperBound {
                    defer { i += 1 }
                    let token = doc.tokens[i]
                    guard token.isWord, !doc.quoted[i] else { continue }
                    let w = token.lower
                    if has(w, "pronoun.first") { first += 1 }
                    if has(w, "pronoun.second") { second += 1 }
                    if has(w, "pronoun.third") { third += 1 }
                    guard let (verb, tense, consumed) = finiteVerb(doc, at: i, clause: clause) else { continue }
                    // Story time: past perfect before the narrative's now, the future after it; a
                    // "before that" / "earlier" / "years ago" cue moves its sentence half a step back.
                    var layer: Float = tense == "past_perfect" ? -1 : (tense == "future" ? 1 : 0)
                    if sentenceLayer < 0 && tense != "past_perfect" { layer -= 0.5 }
                    let marker = temporal.first { clause.contains($0.range.lowerBound) } ?? temporal.first { m in
                        !events.contains { $0.time != nil && doc.sentenceOfToken[$0.clause.lowerBound] == doc.sentenceOfToken[m.range.lowerBound] } && m.range.lowerBound < i
                    }
                    events.append(Found(index: events.count, verb: verb, clause: clause, tense: tense, layer: layer, time: marker.map { doc.text(of: $0.range).lowercased() }))
                    i += consumed - 1
                }
            }
            // Names and third-person nouns as narrative subjects count toward third person.
        }
        for a in mentions where !a.isSelf && !doc.quoted[a.range.lowerBound] && AgentDetector.pronouns[doc.tokens[a.range.lowerBound].lower] == nil {
            third += 1
        }
        let ordered = events.sorted { ($0.layer, $0.index) < ($1.layer, $1.index) }
        var rank: [Int: Int] = [:]
        for (r, e) in ordered.enumerated() { rank[e.index] = r }
        let outEvents = ordered.map { e in
            NarrativeResult.Event(index: e.index, order: rank[e.index]!, verb: e.verb, text: doc.trimmedText(of: e.clause), tense: e.tense, time: e.time)
        }
        // Speaker labels ("Anna: … Ben: …") mean the narrator changes.
        var speakers: Set<String> = []
        for sentence in doc.sentences where sentence.count > 2 {
            let t = doc.tokens[sentence.lowerBound]
            if t.isCapitalized, doc.tokens[sentence.lowerBound + 1].lower == ":" { speakers.insert(t.lower) }
        }
        return NarrativeResult(
            events: outEvents,
            characters: characters(doc, mentions),
            arc: arc(doc),
            perspective: speakers.count >= 2 ? "mixed" : Self.perspective(first: first, second: second, third: third),
            tense: Self.tense(events.map(\.tense))
        )
    }

    /// The finite verb group starting at `i`: (main verb, tense, tokens consumed).
    func finiteVerb(_ doc: Document, at i: Int, clause: Range<Int>) -> (String, String, Int)? {
        let w = doc.tokens[i].lower
        let previous = i > clause.lowerBound ? doc.tokens[i - 1].lower : ""
        // Look ahead past adverbs and negation for the main verb of an auxiliary.
        func main(after k: Int, label: String) -> (String, Int)? {
            var j = k + 1
            while j < clause.upperBound, j <= k + 3 {
                let n = doc.tokens[j].lower
                if isVerb(n, label) { return (n, j - i + 1) }
                if has(n, "adverb") || Scope.negators.contains(n) || n == "not" || n == "also" || n == "just" || n == "never" || n == "already" || n == "been" && label == "verb.pp" {
                    j += 1
                    continue
                }
                return nil
            }
            return nil
        }
        if w == "going" || w == "gonna", i + 1 < clause.upperBound, Self.presentBe.contains(previous) || Self.pastBe.contains(previous) || has(previous, "pronoun.first") {
            let k = w == "gonna" ? i : i + 1
            if w == "gonna" || doc.tokens[i + 1].lower == "to", let (v, n) = main(after: k, label: "verb.base") {
                return (v, Self.pastBe.contains(previous) ? "past" : "future", n)
            }
        }
        if has(w, "aux.future") {
            if let (v, n) = main(after: i, label: "verb.base") { return (v, "future", n) }
            if i + 1 < clause.upperBound, ["be", "have", "do", "get"].contains(doc.tokens[i + 1].lower) { return (doc.tokens[i + 1].lower, "future", 2) }
            return nil
        }
        if Self.perfectPast.contains(w) {
            if let (v, n) = main(after: i, label: "verb.pp") { return (v, "past_perfect", n) }
            if i + 1 < clause.upperBound, doc.tokens[i + 1].lower == "been" { return ("been", "past_perfect", 2) }
            if w == "had" || w == "hadn't" { return ("had", "past", 1) }
            return nil
        }
        if Self.perfectPresent.contains(w) {
            // The present perfect is a present tense: "I have lived here for years".
            if let (v, n) = main(after: i, label: "verb.pp") { return (v, "present_perfect", n) }
            if i + 1 < clause.upperBound, doc.tokens[i + 1].lower == "been" { return ("been", "present_perfect", 2) }
            if w == "has" || w == "have" || w.hasSuffix("'ve") { return (w == "has" ? "has" : "have", "present", 1) }
            return nil
        }
        if Self.pastBe.contains(w) {
            if i + 2 < clause.upperBound, doc.tokens[i + 1].lower == "going", doc.tokens[i + 2].lower == "to" { return nil }
            if let (v, n) = main(after: i, label: "verb.ing") { return (v, "past", n) }
            if let (v, n) = main(after: i, label: "verb.pp") { return (v, "past", n) }
            return (w, "past", 1)
        }
        if Self.presentBe.contains(w) {
            // "I'm going to run": the future is read at "going".
            if i + 2 < clause.upperBound, doc.tokens[i + 1].lower == "going", doc.tokens[i + 2].lower == "to" { return nil }
            if let (v, n) = main(after: i, label: "verb.ing"), v != "going" { return (v, "present", n) }
            if let (v, n) = main(after: i, label: "verb.pp") { return (v, "present", n) }
            return (Self.copula[w] ?? w, "present", 1)
        }
        if Self.doPast.contains(w), let (v, n) = main(after: i, label: "verb.base") { return (v, "past", n) }
        if Self.doPresent.contains(w), let (v, n) = main(after: i, label: "verb.base") { return (v, "present", n) }
        if has(w, "aux.modal") {
            if let (v, n) = main(after: i, label: "verb.base") { return (v, "modal", n) }
            if i + 1 < clause.upperBound, ["be", "have", "do"].contains(doc.tokens[i + 1].lower) { return (doc.tokens[i + 1].lower, "modal", 2) }
            return nil
        }
        if Self.blockers.contains(previous) || previous == "to" { return nil }
        let isPast = isVerb(w, "verb.past")
        let isBase = has(w, "verb.base")
        let is3sg = isVerb(w, "verb.3sg")
        let subjectBefore = Self.subjects.contains(previous) || has(previous, "pronoun.first") || has(previous, "pronoun.third") || has(previous, "adverb") || doc.tokens[max(clause.lowerBound, i - 1)].isCapitalized && i > clause.lowerBound
        if isPast && !(isBase && !subjectBefore) {
            if isBase {
                // "read", "put": past unless a subject that takes the base form in the present.
                if ["he", "she", "it"].contains(previous) || doc.tokens[max(clause.lowerBound, i - 1)].isCapitalized && i > clause.lowerBound { return (w, "past", 1) }
                return (w, "ambiguous", 1)
            }
            return (w, "past", 1)
        }
        // "her grandson manages": a determiner + noun subject right before a third-person form.
        let nounSubject = i >= clause.lowerBound + 2 && doc.tokens[i - 1].isWord && AgentDetector.determiners.contains(doc.tokens[i - 2].lower)
        if is3sg && (subjectBefore || nounSubject) { return (w, "present", 1) }
        if isBase && subjectBefore && ["i", "you", "we", "they"].contains(previous) { return (w, "present", 1) }
        return nil
    }

    /// Words that open a new finite clause inside a punctuation-delimited clause.
    static let clauseOpeners: Set<String> = [
        "and", "but", "because", "so", "when", "while", "then", "after", "before", "until", "that", "which", "who",
        "if", "although", "though", "since", "or", "whereas", "once", "where",
    ]

    /// A clause cut again before each conjunction or subordinator, so each event gets its own text.
    func subclauses(_ doc: Document, _ clause: Range<Int>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = clause.lowerBound
        for i in clause where i > start && Self.clauseOpeners.contains(doc.tokens[i].lower) {
            result.append(start..<i)
            start = i
        }
        result.append(start..<clause.upperBound)
        return result
    }

    static func tense(_ tenses: [String]) -> String {
        var past = 0, present = 0, future = 0
        for t in tenses {
            switch t {
            case "past", "past_perfect": past += 1
            case "present", "present_perfect": present += 1
            case "future": future += 1
            default: break
            }
        }
        let total = past + present + future
        guard total > 0 else { return "present" }
        let counts = [("past", past), ("present", present), ("future", future)].sorted { $0.1 > $1.1 }
        let top = counts[0]
        if Float(top.1) / Float(total) >= 0.65 { return top.0 }
        if counts[1].1 >= 2 { return "mixed" }
        return top.0
    }

    static func perspective(first: Int, second: Int, third: Int) -> String {
        // A "you" addressed as a protagonist beside the narrator's "I" reads as mixed; a passing "you" does not.
        if first > 0 { return second >= 2 && Float(second) >= 0.6 * Float(first) ? "mixed" : "first_person" }
        if second > 0 && second >= third { return "mixed" }
        return "third_person"
    }

    func characters(_ doc: Document, _ mentions: [AgentDetector.Agent]) -> [String] {
        var seen: [String] = []
        for a in mentions where !doc.quoted[a.range.lowerBound] {
            let name = a.name == "we" ? "we" : a.name
            if name == "you" { continue }
            if !seen.contains(name) { seen.append(name) }
        }
        return seen
    }

    func arc(_ doc: Document) -> NarrativeResult.Arc {
        let words = doc.tokens.indices.filter { doc.tokens[$0].isWord }
        var staging = [Double](repeating: 0, count: Self.segments)
        var plot = staging
        var tension = staging
        guard !words.isEmpty else { return .init(staging: staging, plotProgression: plot, cognitiveTension: tension) }
        for s in 0..<Self.segments {
            let lo = words.count * s / Self.segments
            let hi = words.count * (s + 1) / Self.segments
            guard hi > lo else { continue }
            var a = 0, p = 0, c = 0
            for k in lo..<hi {
                let w = doc.tokens[words[k]].lower
                if has(w, "article") || has(w, "preposition") { a += 1 }
                if model.contains(word: w, labelPrefix: "aux.") || has(w, "adverb") || model.contains(word: w, labelPrefix: "pronoun.") { p += 1 }
                if has(w, "cognitive") { c += 1 }
            }
            let n = Float(hi - lo)
            staging[s] = rounded(Float(a) / n)
            plot[s] = rounded(Float(p) / n)
            tension[s] = rounded(Float(c) / n)
        }
        return .init(staging: staging, plotProgression: plot, cognitiveTension: tension)
    }
}
