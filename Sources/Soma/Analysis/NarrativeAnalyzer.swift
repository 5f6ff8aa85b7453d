/// What story is told.
public struct NarrativeResult: Codable, Sendable, Equatable {
    public struct Event: Codable, Sendable, Equatable {
        /// Position among the events in text order (0-based).
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

    /// Events in story order. States ("was quiet", "has two sons") are not events: they count
    /// toward `tense` only.
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

    let bits: Bits
    /// Per pattern: a temporal frame always ahead of the writer's now (flag `future` in the model).
    let futureFrame: [Bool]
    /// The trie over the temporal patterns only: the scan for time markers walks it alone.
    let temporalMatcher: PatternMatcher

    public init(model: ModuleModel) {
        self.model = model
        agents = AgentDetector(model: model)
        bits = Bits(model)
        futureFrame = model.patterns.map { $0.label == "temporal" && $0.flags.contains("future") }
        temporalMatcher = PatternMatcher(patterns: model.patterns, where: { $0.label == "temporal" })
    }

    /// Where a clause opened by the subordinator goes in its sentence's story order.
    static let subordinatorStep: [String: Int] = ["before": 1, "after": -1, "once": -1, "since": -1]
    /// Words opening a clause whose present tense follows the main clause's future ("I'll call when
    /// I get home", "If it rains tomorrow, we'll stay in").
    static let futureSubordinators: WordSet = ["when", "after", "before", "until", "once", "if", "unless", "while", "as"]

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

    public func analyze(_ doc: Document) -> NarrativeResult {
        let ids = temporalMatcher.tokenIDs(doc)
        let look = lookup(doc)
        let mentions = agents.agents(in: doc)
        var agentStart = [Bool](repeating: false, count: doc.tokens.count)
        for a in mentions { agentStart[a.range.lowerBound] = true }
        var events: [Found] = []
        var first = 0
        var second = 0
        var third = 0
        for sentence in doc.sentences {
            let temporal = temporalMatcher.longestMatches(in: doc, ids: ids, range: sentence, isAgent: { agentStart[$0] })
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
        for a in mentions where !a.isSelf && !doc.quoted[a.range.lowerBound] && !doc.closed[a.range.lowerBound].contains(.pronoun) {
            third += 1
        }
        // A state ("was quiet", "is asleep", "has two sons") tells the text's time but is no event
        // of the story: it counts toward the tense, not among the events.
        // Events are numbered among themselves, in text order.
        var narrated = events.filter { !Self.stateVerbs.contains($0.verb) }
        for p in narrated.indices { narrated[p].index = p }
        let ordered = narrated.sorted { ($0.layer, $0.sentence, $0.step, $0.index) < ($1.layer, $1.sentence, $1.step, $1.index) }
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

    /// Main verbs that name a state, not an event: "be" in every form, and "have" of possession
    /// in the present ("has two sons"; "had" is as often an event: "had lunch").
    static let stateVerbs: Set<String> = ["be", "am", "is", "are", "was", "were", "been", "being", "'m", "'re", "'s", "has", "have"]

    /// Words that open a new finite clause inside a punctuation-delimited clause.
    static let clauseOpeners: WordSet = [
        "and", "but", "because", "so", "when", "while", "then", "after", "before", "until", "that", "which", "who",
        "if", "although", "though", "since", "or", "whereas", "once", "where",
    ]

    /// A clause cut again before each conjunction or subordinator, so each event gets its own text.
    func subclauses(_ doc: Document, _ clause: Range<Int>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = clause.lowerBound
        for i in clause where i > start && doc.closed[i].contains(.clauseOpener) {
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
        // With no "I" or "we", "you" is the reader (instructions, notices, letters): third person.
        if first > 0 { return second >= 2 && Float(second) >= 0.6 * Float(first) ? "mixed" : "first_person" }
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
        let words = doc.tokens.withUnsafeBufferPointer { t in t.indices.filter { t[$0].isWord } }
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
