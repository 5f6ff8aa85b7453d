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
    static let presentBe: Set<String> = [
        "am", "is", "are", "isn't", "aren't", "i'm", "he's", "she's", "it's", "we're", "they're", "you're", "'m", "'re", "that's", "there's",
    ]
    static let perfectPast: Set<String> = ["had", "hadn't", "i'd", "we'd", "he'd", "she'd", "they'd", "you'd"]
    static let perfectPresent: Set<String> = ["have", "has", "haven't", "hasn't", "i've", "we've", "they've", "you've"]
    static let copula: [String: String] = [
        "i'm": "am", "'m": "am", "he's": "is", "she's": "is", "it's": "is", "that's": "is", "there's": "is",
        "we're": "are", "they're": "are", "you're": "are", "'re": "are", "isn't": "is", "aren't": "are",
    ]
    static let doPast: Set<String> = ["did", "didn't"]
    static let doPresent: Set<String> = ["do", "does", "don't", "doesn't"]

    /// Class bits of the model, looked up once (per-token masks are tested against them).
    struct Bits {
        var verbBase: UInt64, verb3sg: UInt64, verbPast: UInt64, verbPP: UInt64, verbIng: UInt64
        var auxFuture: UInt64, auxModal: UInt64, anyAux: UInt64, adverb: UInt64, article: UInt64
        var preposition: UInt64, cognitive: UInt64, first: UInt64, second: UInt64, third: UInt64
        var anyPronoun: UInt64, anyClass: UInt64

        init(_ m: ModuleModel) {
            verbBase = m.bit(for: "verb.base"); verb3sg = m.bit(for: "verb.3sg"); verbPast = m.bit(for: "verb.past")
            verbPP = m.bit(for: "verb.pp"); verbIng = m.bit(for: "verb.ing"); auxFuture = m.bit(for: "aux.future")
            auxModal = m.bit(for: "aux.modal"); anyAux = m.bit(for: "aux."); adverb = m.bit(for: "adverb")
            article = m.bit(for: "article"); preposition = m.bit(for: "preposition"); cognitive = m.bit(for: "cognitive")
            first = m.bit(for: "pronoun.first"); second = m.bit(for: "pronoun.second"); third = m.bit(for: "pronoun.third")
            anyPronoun = m.bit(for: "pronoun."); anyClass = m.bit(for: "")
        }
    }

    /// Closed-class words the verb rules test, as bits: one hash per token instead of one per test.
    struct Closed: OptionSet, Sendable {
        let rawValue: UInt32
        static let subject = Closed(rawValue: 1 << 0)
        static let blocker = Closed(rawValue: 1 << 1)
        static let pastBe = Closed(rawValue: 1 << 2)
        static let presentBe = Closed(rawValue: 1 << 3)
        static let perfectPast = Closed(rawValue: 1 << 4)
        static let perfectPresent = Closed(rawValue: 1 << 5)
        static let doPast = Closed(rawValue: 1 << 6)
        static let doPresent = Closed(rawValue: 1 << 7)
        static let negation = Closed(rawValue: 1 << 8)
        /// A number word or a number ("hundred", "40"): neither it nor the word it counts is a verb.
        static let number = Closed(rawValue: 1 << 9)
        static let floating = Closed(rawValue: 1 << 10)
        static let preposition = Closed(rawValue: 1 << 11)
        static let object = Closed(rawValue: 1 << 12)
        static let quantifier = Closed(rawValue: 1 << 13)
    }

    static let closed: WordTable<Closed> = {
        var table = WordTable<Closed>()
        func add(_ words: some Sequence<String>, _ flag: Closed) {
            for w in words { table.update(w, default: []) { $0.formUnion(flag) } }
        }
        add(subjects, .subject); add(blockers, .blocker); add(pastBe, .pastBe); add(presentBe, .presentBe)
        add(perfectPast, .perfectPast); add(perfectPresent, .perfectPresent); add(doPast, .doPast); add(doPresent, .doPresent)
        add(Scope.negators.words + ["also", "just", "already"], .negation)
        add(numbers.words, .number); add(floating.words, .floating); add(prepositions.words, .preposition); add(objects, .object)
        add(AgentDetector.quantifiers.words, .quantifier)
        return table
    }()

    let bits: Bits
    /// Per pattern: a temporal frame always ahead of the writer's now (flag `future` in the model).
    let futureFrame: [Bool]

    public init(model: ModuleModel) {
        self.model = model
        agents = AgentDetector(model: model)
        bits = Bits(model)
        futureFrame = model.patterns.map { $0.label == "temporal" && $0.flags.contains("future") }
    }

    /// Words opening a clause whose present tense follows the main clause's future ("I'll call when
    /// I get home", "If it rains tomorrow, we'll stay in").
    /// Where a clause opened by the subordinator goes in its sentence's story order.
    static let subordinatorStep: [String: Int] = ["before": 1, "after": -1, "once": -1]
    static let futureSubordinators: WordSet = ["when", "after", "before", "until", "once", "if", "unless", "while", "as"]

    /// Words that float between an auxiliary and its verb ("we'll both take", "had only nodded").
    static let floating: WordSet = ["both", "all", "each", "only", "just", "also", "already", "still", "ever", "even"]
    static let prepositions: WordSet = [
        "of", "in", "on", "at", "for", "with", "to", "from", "by", "into", "onto", "about", "under", "over", "near", "across", "through",
        "around", "behind", "past", "after", "before", "during", "without",
    ]
    static let auxiliaries: Set<String> = ["have", "has", "had", "be", "been", "being", "do", "did", "is", "am", "are", "was", "were"]
    /// Object pronouns: a bare form after one is an infinitive ("let him beat me", "made us wait").
    static let objects: [String] = ["him", "them", "me", "us"]
    /// Number words (a verb's ending may fit them: "hundred").
    static let numbers: WordSet = [
        "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "twenty", "thirty", "forty",
        "fifty", "hundred", "hundreds", "thousand", "thousands", "million", "millions", "dozen", "dozens",
    ]

    /// Per-token lookups done once per document.
    struct Lookup {
        var masks: [UInt64]
        var closed: [Closed]
    }

    func lookup(_ doc: Document) -> Lookup {
        Lookup(
            masks: doc.tokens.map { model.labelMask(of: $0) },
            closed: doc.tokens.map { t -> Closed in
                let flags = Self.closed[t] ?? []
                return t.kind == .number ? flags.union(.number) : flags
            })
    }

    struct Found {
        var index: Int
        var verb: String
        var clause: Range<Int>
        var tense: String
        var layer: Float
        var time: String?
        /// The sentence's first token, and the clause's place in it (-1 ahead, 1 after).
        var sentence: Int
        var step: Int
    }

    /// A verb form by the lexicon, or — for a word the model does not know at all — by its ending:
    /// the verb table then only sharpens the analysis, so pruning rare verb forms costs little.
    func isVerb(_ doc: Document, _ i: Int, _ bit: UInt64, _ look: Lookup) -> Bool {
        if look.masks[i] & bit != 0 { return true }
        guard look.masks[i] & bits.anyClass == 0 else { return false }
        let token = doc.tokens[i]
        guard token.isAlphabetic else { return false }
        let word = token.lower
        guard word.unicodeScalars.count >= 4 else { return false }
        // ASCII words compare their last bytes; others their last Characters, as `hasSuffix` does.
        func ends(_ suffix: StaticString) -> Bool {
            guard token.isASCII else { return word.hasSuffix(suffix.description) }
            let n = suffix.utf8CodeUnitCount
            let utf8 = word.utf8
            guard utf8.count >= n else { return false }
            return suffix.withUTF8Buffer { utf8.suffix(n).elementsEqual($0) }
        }
        switch bit {
        case bits.verbPast: return ends("ed")
        case bits.verbPP: return ends("ed") || ends("en")
        case bits.verbIng: return ends("ing")
        case bits.verb3sg: return ends("s") && !ends("ss") && !ends("us")
        case bits.verbBase: return !ends("ed") && !ends("ing") && !ends("ly") && !ends("s")
        default: return false
        }
    }

    public func analyze(_ doc: Document) -> NarrativeResult {
        let ids = model.matcher.tokenIDs(doc)
        let look = lookup(doc)
        let mentions = agents.agents(in: doc)
        var agentStart = [Bool](repeating: false, count: doc.tokens.count)
        for a in mentions { agentStart[a.range.lowerBound] = true }
        var events: [Found] = []
        var first = 0
        var second = 0
        var third = 0
        for sentence in doc.sentences {
            let temporal = model.matcher.longestMatches(
                in: doc, ids: ids, range: sentence, isAgent: { agentStart[$0] }, accept: { model.patterns[$0].label == "temporal" }
            )
            .filter { !doc.quoted[$0.range.lowerBound] }
            let clauses = doc.clauses(in: sentence).flatMap { subclauses(doc, $0) }
            // "before", "after" or "once" opening a clause is a subordinator ("… and vanished before
            // the dog noticed", "Before I dial, I stop …"): it orders the sentence's clauses — its own
            // clause after (before) or ahead of (after, once) the rest — not the sentence against the
            // others, as "before that" or "years ago" do.
            var clauseStep: [Int: Int] = [:]
            var sentenceLayer = 0
            for t in temporal {
                let k = t.range.lowerBound
                if t.range.count == 1, clauses.contains(where: { $0.lowerBound == k }), k + 1 < sentence.upperBound, doc.tokens[k + 1].isWord,
                    let step = Self.subordinatorStep[doc.tokens[k].lower]
                {
                    clauseStep[k] = step
                } else if model.weight(t.pattern, "order") < 0 {
                    sentenceLayer = -1
                }
            }
            // "By nine every croissant had gone": a past perfect measured against a time of the story
            // ("by" and a time, not "by the time" and a clause) keeps its place in the story.
            let byTime =
                doc.tokens[sentence.lowerBound].lower == "by" && sentence.count > 2 && doc.tokens[sentence.lowerBound + 1].lower != "the"
            // "We leave tomorrow", "next week I'm starting": a present tense under a future frame is a plan.
            let planned = temporal.contains { futureFrame[$0.pattern] }
            let sentenceEvents = events.count
            for clause in clauses {
                var i = clause.lowerBound
                // The token after the clause's last verb group: a past form there is an adjective.
                var afterVerb = -1
                while i < clause.upperBound {
                    defer { i += 1 }
                    let token = doc.tokens[i]
                    guard token.isWord, !doc.quoted[i] else { continue }
                    let mask = look.masks[i]
                    if mask & bits.first != 0 { first += 1 }
                    if mask & bits.second != 0 { second += 1 }
                    if mask & bits.third != 0 { third += 1 }
                    guard let (verb, finiteTense, consumed) = finiteVerb(doc, at: i, clause: clause, look, afterVerb: afterVerb == i) else { continue }
                    // (not after a bare auxiliary: "must have got out")
                    afterVerb = Self.auxiliaries.contains(verb) ? -1 : i + consumed
                    var tense = finiteTense
                    if planned && tense == "present" { tense = "future" }
                    // Story time: past perfect before the narrative's now, the future after it; a
                    // "before that" / "earlier" / "years ago" cue moves its sentence half a step back.
                    var layer: Float = tense == "past_perfect" && !byTime ? -1 : (tense == "future" ? 1 : 0)
                    if sentenceLayer < 0 && tense != "past_perfect" { layer -= 0.5 }
                    let marker =
                        temporal.first { clause.contains($0.range.lowerBound) }
                        ?? temporal.first { m in
                            !events.contains { $0.time != nil && doc.sentenceOfToken[$0.clause.lowerBound] == doc.sentenceOfToken[m.range.lowerBound] }
                                && m.range.lowerBound < i
                        }
                    events.append(
                        Found(
                            index: events.count, verb: verb, clause: clause, tense: tense, layer: layer,
                            time: marker.map { doc.text(of: $0.range).lowercased() }, sentence: sentence.lowerBound,
                            step: clauseStep[clause.lowerBound] ?? 0))
                    i += consumed - 1
                }
            }
            // A present tense in a when/if/until clause of a sentence about the future is in the future.
            if events[sentenceEvents...].contains(where: { $0.tense == "future" }) {
                for k in sentenceEvents..<events.count
                where events[k].tense == "present" && Self.futureSubordinators.contains(doc.tokens[events[k].clause.lowerBound]) {
                    events[k].tense = "future"
                    events[k].layer = 1
                }
            }
            // Names and third-person nouns as narrative subjects count toward third person.
        }
        for a in mentions where !a.isSelf && !doc.quoted[a.range.lowerBound] && AgentDetector.pronouns[doc.tokens[a.range.lowerBound]] == nil {
            third += 1
        }
        let ordered = events.sorted { ($0.layer, $0.sentence, $0.step, $0.index) < ($1.layer, $1.sentence, $1.step, $1.index) }
        var rank: [Int: Int] = [:]
        for (r, e) in ordered.enumerated() { rank[e.index] = r }
        let outEvents = ordered.map { e in
            NarrativeResult.Event(index: e.index, order: rank[e.index]!, verb: e.verb, text: doc.excerpt(of: e.clause), tense: e.tense, time: e.time)
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
            arc: arc(doc, look),
            perspective: speakers.count >= 2 ? "mixed" : Self.perspective(first: first, second: second, third: third),
            tense: Self.tense(events.map(\.tense))
        )
    }

    /// The finite verb group starting at `i`: (main verb, tense, tokens consumed).
    /// `afterVerb`: the token right after a verb group of the same clause.
    func finiteVerb(_ doc: Document, at i: Int, clause: Range<Int>, _ look: Lookup, afterVerb: Bool = false) -> (String, String, Int)? {
        let w = doc.tokens[i].lower
        let c = look.closed[i]
        let hasPrevious = i > clause.lowerBound
        let previous = hasPrevious ? doc.tokens[i - 1].lower : ""
        let pc: Closed = hasPrevious ? look.closed[i - 1] : []
        let pm: UInt64 = hasPrevious ? look.masks[i - 1] : 0
        func next(_ k: Int) -> String? { k < clause.upperBound ? doc.tokens[k].lower : nil }
        // Look ahead past adverbs and negation for the main verb of an auxiliary.
        func main(after k: Int, _ bit: UInt64) -> (String, Int)? {
            var j = k + 1
            while j < clause.upperBound, j <= k + 3 {
                if look.closed[j].contains(.number) { return nil }
                if look.closed[j].contains(.floating) {
                    j += 1
                    continue
                }
                if isVerb(doc, j, bit, look) {
                    // "have been married", "will be amused": the participle after "been" or "be" is the main
                    // verb (a regular participle may be listed only as a past form: "amused").
                    if doc.tokens[j].lower == "been" || doc.tokens[j].lower == "be", j + 1 < clause.upperBound,
                        isVerb(doc, j + 1, bits.verbPP, look) || isVerb(doc, j + 1, bits.verbIng, look)
                            || isVerb(doc, j + 1, bits.verbPast, look)
                    {
                        return (doc.tokens[j + 1].lower, j - i + 2)
                    }
                    return (doc.tokens[j].lower, j - i + 1)
                }
                // "had only nodded": a regular past form stands for its participle ("nodded" may be listed as past only).
                if bit == bits.verbPP, isVerb(doc, j, bits.verbPast, look), doc.tokens[j].lower.hasSuffix("ed") { return (doc.tokens[j].lower, j - i + 1) }
                if look.masks[j] & bits.adverb != 0 || look.closed[j].contains(.negation) || (doc.tokens[j].lower == "been" && bit == bits.verbPP) {
                    j += 1
                    continue
                }
                return nil
            }
            return nil
        }
        // The participle after "be"/"been" at `k` ("will be amused", "had been told"), as (verb, tokens).
        func participle(after k: Int) -> (String, Int)? {
            let p = k + 1
            guard p < clause.upperBound,
                isVerb(doc, p, bits.verbPP, look) || isVerb(doc, p, bits.verbIng, look) || isVerb(doc, p, bits.verbPast, look)
            else { return nil }
            return (doc.tokens[p].lower, p - i + 1)
        }
        if w == "going" || w == "gonna", i + 1 < clause.upperBound, pc.contains(.presentBe) || pc.contains(.pastBe) || pm & bits.first != 0 {
            let k = w == "gonna" ? i : i + 1
            if w == "gonna" || next(i + 1) == "to", let (v, n) = main(after: k, bits.verbBase) {
                return (v, pc.contains(.pastBe) ? "past" : "future", n)
            }
        }
        if look.masks[i] & bits.auxFuture != 0 {
            if let (v, n) = main(after: i, bits.verbBase) { return (v, "future", n) }
            if next(i + 1) == "be", let (v, n) = participle(after: i + 1) { return (v, "future", n) }
            if let n = next(i + 1), ["be", "have", "do", "get"].contains(n) { return (n, "future", 2) }
            return nil
        }
        if c.contains(.perfectPast) {
            if let (v, n) = main(after: i, bits.verbPP) { return (v, "past_perfect", n) }
            if next(i + 1) == "been" { return participle(after: i + 1).map { ($0.0, "past_perfect", $0.1) } ?? ("been", "past_perfect", 2) }
            if w == "had" || w == "hadn't" { return ("had", "past", 1) }
            return nil
        }
        if c.contains(.perfectPresent) {
            // The present perfect is a present tense: "I have lived here for years".
            if let (v, n) = main(after: i, bits.verbPP) { return (v, "present_perfect", n) }
            if next(i + 1) == "been" { return participle(after: i + 1).map { ($0.0, "present_perfect", $0.1) } ?? ("been", "present_perfect", 2) }
            if w == "has" || w == "have" || w.hasSuffix("'ve") { return (w == "has" ? "has" : "have", "present", 1) }
            return nil
        }
        let goingTo = next(i + 1) == "going" && next(i + 2) == "to"
        if c.contains(.pastBe) {
            if goingTo { return nil }
            if let (v, n) = main(after: i, bits.verbIng) { return (v, "past", n) }
            if let (v, n) = main(after: i, bits.verbPP) { return (v, "past", n) }
            return (w, "past", 1)
        }
        if c.contains(.presentBe) {
            // "I'm going to run": the future is read at "going".
            if goingTo { return nil }
            if let (v, n) = main(after: i, bits.verbIng), v != "going" { return (v, "present", n) }
            if let (v, n) = main(after: i, bits.verbPP) { return (v, "present", n) }
            return (Self.copula[w] ?? w, "present", 1)
        }
        if c.contains(.doPast), let (v, n) = main(after: i, bits.verbBase) { return (v, "past", n) }
        if c.contains(.doPresent), let (v, n) = main(after: i, bits.verbBase) { return (v, "present", n) }
        if look.masks[i] & bits.auxModal != 0 {
            if let (v, n) = main(after: i, bits.verbBase) { return (v, "modal", n) }
            if next(i + 1) == "be", let (v, n) = participle(after: i + 1) { return (v, "modal", n) }
            if let n = next(i + 1), ["be", "have", "do"].contains(n) { return (n, "modal", 2) }
            return nil
        }
        if pc.contains(.blocker) || previous == "to" { return nil }
        // Numbers and what they count are not verbs: "two hundred", "six years ago".
        if c.contains(.number) || pc.contains(.number) { return nil }
        let isPast = isVerb(doc, i, bits.verbPast, look)
        let isBase = look.masks[i] & bits.verbBase != 0
        let is3sg = isVerb(doc, i, bits.verb3sg, look)
        let previousCapitalized = hasPrevious && doc.tokens[i - 1].isCapitalized
        let subjectBefore = pc.contains(.subject) || pm & (bits.first | bits.third | bits.adverb) != 0 || previousCapitalized
        if isPast && !(isBase && !subjectBefore) {
            // "get married", "look lost", "eat grilled sardines": a past form right after a verb is an adjective.
            if !isBase && (afterVerb || i >= clause.lowerBound + 2 && doc.tokens[i - 2].lower == "to" && pm & bits.verbBase != 0) { return nil }
            if isBase {
                // "read", "put": past unless a subject that takes the base form in the present.
                if previous == "he" || previous == "she" || previous == "it" || previousCapitalized { return (w, "past", 1) }
                // "let him beat me": after an object, the bare form.
                if pc.contains(.object) { return nil }
                return (w, "ambiguous", 1)
            }
            return (w, "past", 1)
        }
        // "her grandson manages": a determiner + noun subject right before a third-person form; not
        // after a preposition ("at the park gates", "about the job cuts").
        let nounSubject =
            i >= clause.lowerBound + 2 && doc.tokens[i - 1].isWord && AgentDetector.determiners.contains(doc.tokens[i - 2])
            && (i - 2 == clause.lowerBound || !look.closed[i - 3].contains(.preposition))
        // "Most nights I read": a plural after a quantifier is a noun.
        if is3sg && pc.contains(.quantifier) { return nil }
        if is3sg && (subjectBefore || nounSubject) { return (w, "present", 1) }
        // "we always walk": the subject before the adverbs.
        var s = i - 1
        while s > clause.lowerBound, look.masks[s] & bits.adverb != 0 { s -= 1 }
        let subject = s >= clause.lowerBound ? doc.tokens[s].lower : ""
        if isBase && subjectBefore && (subject == "i" || subject == "you" || subject == "we" || subject == "they") { return (w, "present", 1) }
        return nil
    }

    /// Words that open a new finite clause inside a punctuation-delimited clause.
    static let clauseOpeners: WordSet = [
        "and", "but", "because", "so", "when", "while", "then", "after", "before", "until", "that", "which", "who",
        "if", "although", "though", "since", "or", "whereas", "once", "where",
    ]

    /// A clause cut again before each conjunction or subordinator, so each event gets its own text.
    func subclauses(_ doc: Document, _ clause: Range<Int>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = clause.lowerBound
        for i in clause where i > start && Self.clauseOpeners.contains(doc.tokens[i]) {
            result.append(start..<i)
            start = i
        }
        result.append(start..<clause.upperBound)
        return result
    }

    static func tense(_ tenses: [String]) -> String {
        var past = 0
        var present = 0
        var future = 0
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
        // Two tenses told at length, or a text that moves through past, present and future.
        if counts[1].1 >= 2 || counts[2].1 >= 1 { return "mixed" }
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
            // "the fisherman" and "a fisherman" are one character: the definite article is dropped.
            let name = a.name.hasPrefix("the ") ? String(a.name.dropFirst(4)) : a.name
            if name == "you" { continue }
            if !seen.contains(name) { seen.append(name) }
        }
        return seen
    }

    func arc(_ doc: Document, _ look: Lookup) -> NarrativeResult.Arc {
        let words = doc.tokens.indices.filter { doc.tokens[$0].isWord }
        var staging = [Double](repeating: 0, count: Self.segments)
        var plot = staging
        var tension = staging
        guard !words.isEmpty else { return .init(staging: staging, plotProgression: plot, cognitiveTension: tension) }
        for s in 0..<Self.segments {
            let lo = words.count * s / Self.segments
            let hi = words.count * (s + 1) / Self.segments
            guard hi > lo else { continue }
            var a = 0
            var p = 0
            var c = 0
            for k in lo..<hi {
                let mask = look.masks[words[k]]
                if mask & (bits.article | bits.preposition) != 0 { a += 1 }
                if mask & (bits.anyAux | bits.adverb | bits.anyPronoun) != 0 { p += 1 }
                if mask & bits.cognitive != 0 { c += 1 }
            }
            let n = Float(hi - lo)
            staging[s] = rounded(Float(a) / n)
            plot[s] = rounded(Float(p) / n)
            tension[s] = rounded(Float(c) / n)
        }
        return .init(staging: staging, plotProgression: plot, cognitiveTension: tension)
    }
}
