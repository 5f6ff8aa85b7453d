/// Whose minds the writer models, and how.
public struct TheoryOfMindResult: Codable, Sendable, Equatable {
    public struct State: Codable, Sendable, Equatable {
        /// belief, desire, intention, emotion, knowledge or perception.
        public var type: String
        public var verb: String
        public var content: String
        public var negated: Bool
    }

    public struct AgentStates: Codable, Sendable, Equatable {
        public var agent: String
        public var states: [State]
    }

    /// Agents with their mental states, in order of first appearance ("i" is the writer).
    public var agents: [AgentStates]
    /// In [0, 1]: how much of the mental life described belongs to others, nesting counting extra.
    public var perspectiveTaking: Double
    public var selfReferences: Int
    public var otherReferences: Int

    enum CodingKeys: String, CodingKey {
        case agents
        case perspectiveTaking = "perspective_taking"
        case selfReferences = "self_references"
        case otherReferences = "other_references"
    }
}

/// The six kinds of mental state.
public enum MentalStateType: String, CaseIterable, Sendable {
    case belief, desire, intention, emotion, knowledge, perception
}

/// Template AGENT (+ auxiliaries, adverbs, negation, "be") + mental-state word + complement, applied
/// left to right so nested attributions ("I think she believes he wants …") each yield a state.
public struct TheoryOfMindAnalyzer: Analyzer {
    public static let module = Module.theoryOfMind
    public let model: ModuleModel
    let agents: AgentDetector

    /// Words that may stand between a holder and its mental-state word.
    static let between: WordSet = [
        "do", "does", "did", "don't", "doesn't", "didn't", "am", "is", "are", "was", "were", "be", "been", "being",
        "'m", "isn't", "aren't", "wasn't", "weren't", "have", "has", "had", "haven't", "hasn't", "hadn't", "will",
        "would", "could", "should", "might", "may", "can", "must", "won't", "wouldn't", "couldn't", "can't", "cannot",
        "shouldn't", "not", "never", "really", "also", "always", "still", "just", "truly", "honestly", "sometimes",
        "often", "actually", "genuinely", "secretly", "already", "even", "all", "both", "finally", "suddenly",
        "slowly", "deeply", "ever", "totally", "so", "very", "too", "quite", "kind", "of", "sort", "felt", "feel",
        "feels", "feeling", "got", "get", "gets", "getting", "became", "become", "seemed", "seems", "seem", "looked",
        "look", "looks", "clearly", "obviously", "probably", "definitely", "certainly", "completely", "absolutely",
        "now", "then", "later", "soon", "usually", "only", "half", "pretty", "a", "bit", "little", "more", "most",
        "less", "first", "apparently", "immediately", "instantly", "gradually", "wholeheartedly", "barely", "hardly",
        "no", "longer", "don't", "dont", "didnt", "doesnt", "reportedly", "supposedly", "desperately", "badly",
        "quickly", "silently", "quietly", "privately", "firmly", "strongly", "sincerely", "almost", "nearly", "anymore",
    ]
    static let linking: WordSet = [
        "am", "is", "are", "was", "were", "be", "been", "being", "'m", "isn't", "aren't", "wasn't", "weren't", "felt",
        "feel", "feels", "feeling", "got", "get", "gets", "getting", "became", "become", "seemed", "seems", "seem",
        "looked", "look", "looks", "grew", "stay", "stayed", "remain", "remained",
    ]
    static let beContractions: Set<String> = ["i'm", "you're", "he's", "she's", "we're", "they're", "im"]
    static let feelVerbs: Set<String> = ["feel", "feels", "felt", "feeling"]
    static let complementOpeners: Set<String> = ["that"]

    /// Mental-state patterns: their type and parts of speech ("verb", "adj", "noun").
    /// Per pattern (nil for patterns that are not mental states).
    private let stateIndex: [(type: MentalStateType, pos: Set<String>)?]
    /// The trie over the mental-state patterns only (not the agent words the model also holds).
    private let stateMatcher: PatternMatcher

    public init(model: ModuleModel) {
        self.model = model
        agents = AgentDetector(model: model)
        var index = [(type: MentalStateType, pos: Set<String>)?](repeating: nil, count: model.patterns.count)
        for (i, p) in model.patterns.enumerated() {
            guard let type = MentalStateType(rawValue: p.label) else { continue }
            var pos = p.flags.intersection(["verb", "adj", "noun"])
            if pos.isEmpty { pos = ["verb"] }
            index[i] = (type, pos)
        }
        stateIndex = index
        stateMatcher = PatternMatcher(patterns: model.patterns, where: { MentalStateType(rawValue: $0.label) != nil })
    }

    struct Found {
        var agent: String
        var isSelf: Bool
        var position: Int
        var state: TheoryOfMindResult.State
        var nested: Bool
    }

    public func analyze(_ doc: Document) -> TheoryOfMindResult {
        let ids = stateMatcher.tokenIDs(doc)
        let negated = Scope.negationMask(doc)
        let mentions = agents.agents(in: doc)
        let agentAt = AgentDetector.MentionIndex(mentions, tokens: doc.tokens.count)
        var selfRefs = 0
        var otherRefs = 0
        for a in mentions { if a.isSelf { selfRefs += 1 } else { otherRefs += 1 } }

        var found: [Found] = []
        for sentence in doc.sentences {
            // The earliest end of a state seen so far in the sentence: a state starting at or
            // after it is nested in one (linear, however many states a sentence holds).
            var firstStateEnd = Int.max
            let hits = stateMatcher.longestMatches(in: doc, ids: ids, range: sentence, isAgent: { agentAt.covers($0) })
            var readings: [Range<Int>: [PatternMatcher.Match]] = [:]
            for hit in hits { readings[hit.range, default: []].append(hit) }
            var taken: Set<Int> = []
            for hit in hits where !taken.contains(hit.range.lowerBound) {
                let candidates = readings[hit.range] ?? [hit]
                guard let (type, holder, negatedState) = resolve(doc, candidates, sentence: sentence, agentAt: agentAt, negated: negated) else { continue }
                taken.insert(hit.range.lowerBound)
                let content = complement(doc, after: hit.range.upperBound, in: sentence)
                let nested = firstStateEnd <= hit.range.lowerBound
                firstStateEnd = min(firstStateEnd, hit.range.upperBound)
                found.append(
                    Found(
                        agent: holder.name,
                        isSelf: holder.isSelf,
                        position: hit.range.lowerBound,
                        state: .init(type: type.rawValue, verb: doc.text(of: hit.range).lowercased(), content: content, negated: negatedState),
                        nested: nested
                    ))
            }
        }
        var order: [String] = []
        var grouped: [String: [TheoryOfMindResult.State]] = [:]
        // Every state counts in the scores; the first `maxStates` are listed.
        for f in found.prefix(Self.maxStates) {
            if grouped[f.agent] == nil { order.append(f.agent) }
            grouped[f.agent, default: []].append(f.state)
        }
        let others = found.filter { !$0.isSelf }.count
        let nested = found.filter(\.nested).count
        let taking = found.isEmpty ? 0 : clamp((Float(others) + 0.5 * Float(nested)) / Float(found.count), 0, 1)
        return TheoryOfMindResult(
            agents: order.map { .init(agent: $0, states: grouped[$0]!) },
            perspectiveTaking: rounded(taking),
            selfReferences: selfRefs,
            otherReferences: otherRefs
        )
    }

    /// Chooses the reading of a mental-state word and finds who holds it.
    func resolve(
        _ doc: Document, _ candidates: [PatternMatcher.Match], sentence: Range<Int>,
        agentAt: AgentDetector.MentionIndex, negated: [Bool]
    ) -> (MentalStateType, AgentDetector.Agent, Bool)? {
        guard let first = candidates.first else { return nil }
        let start = first.range.lowerBound
        let word = doc.tokens[start].lower
        // Walk back over auxiliaries, adverbs and negation to the holder.
        var j = start - 1
        var sawLinking = false
        var sawNegation = false
        while j >= sentence.lowerBound, !agentAt.covers(j) {
            let w = doc.tokens[j]
            guard Self.between.contains(w) || Scope.negators.contains(w) else { break }
            if Self.linking.contains(w) { sawLinking = true }
            if Scope.negators.contains(w) { sawNegation = true }
            j -= 1
        }
        var holder = j >= sentence.lowerBound ? agentAt[j] : nil
        if holder == nil, j >= sentence.lowerBound, let (phrase, contracted) = agents.nounPhrase(doc, endingAt: j, in: sentence, notModifiers: Self.between) {
            // "The cat clearly thinks…", "Security staff spotted…", "the dog's been a nervous wreck".
            holder = phrase
            if contracted { sawLinking = true }
        }
        if let h = holder, j == h.range.upperBound - 1 || h.range.contains(j) {
            let last = doc.tokens[h.range.upperBound - 1].lower
            if Self.beContractions.contains(last) {
                sawLinking = true
            } else if last.hasSuffix("'s"), last.count > 3 {
                // "Priya's terrified", "my brother's not going": the holder with "is" (reached over
                // auxiliaries and adverbs only, so not a possessive, which its noun would follow).
                sawLinking = true
                if h.name.hasSuffix("'s") { holder?.name.removeLast(2) }
            }
        }
        var pos: String
        let readings = candidates.compactMap { stateIndex[$0.pattern] }
        if let h = holder, !h.isSubject, Self.possessive(doc.tokens[h.range.upperBound - 1].lower), readings.contains(where: { $0.pos.contains("noun") }) {
            pos = "noun"
            holder = AgentDetector.Agent(
                range: h.range, name: AgentDetector.possessiveOwner[doc.tokens[h.range.lowerBound].lower] ?? h.name, isSelf: h.isSelf, isSubject: true)
        } else if sawLinking, readings.contains(where: { $0.pos.contains("adj") }) {
            pos = "adj"
        } else if readings.contains(where: { $0.pos.contains("verb") }) {
            pos = "verb"
        } else {
            pos = readings.first?.pos.sorted().first ?? "verb"
        }
        if holder == nil {
            // "Hope you're well." / "Can't wait to see you.": a sentence-initial state is the writer's.
            let opening = (sentence.lowerBound..<start).allSatisfy {
                !doc.tokens[$0].isWord || Self.between.contains(doc.tokens[$0]) || Scope.negators.contains(doc.tokens[$0])
            }
            guard opening, pos == "verb" else { return nil }
            holder = AgentDetector.Agent(range: start..<start, name: "i", isSelf: true, isSubject: true)
        }
        guard let holder, holder.isSubject else { return nil }
        if pos == "adj" && !sawLinking { return nil }
        if pos == "noun" && readings.contains(where: { $0.pos.contains("verb") }) == false && holder.range.upperBound != start { return nil }
        guard var type = readings.first(where: { $0.pos.contains(pos) })?.type ?? readings.first?.type else { return nil }
        if Self.feelVerbs.contains(word) {
            let next = first.range.upperBound < sentence.upperBound ? doc.tokens[first.range.upperBound].lower : ""
            if next == "that" || (next == "like" && first.range.upperBound + 1 < sentence.upperBound && agentAt.covers(first.range.upperBound + 1)) {
                type = .belief
            } else if type != .emotion && readings.contains(where: { $0.type == .emotion }) {
                type = .emotion
            } else if readings.isEmpty == false && type == .perception && !(next == "the" || next == "a" || next == "it") {
                type = .emotion
            }
        }
        if word == "going" || word == "gonna" {
            // "going to the shop" is motion; "going to call" is a plan.
            let after = first.range.upperBound < sentence.upperBound ? doc.tokens[first.range.upperBound].lower : ""
            if AgentDetector.determiners.contains(after) || ["school", "work", "bed", "church", "town", "sleep", "be"].contains(after)
                || doc.tokens.indices.contains(first.range.upperBound) == false
            {
                if after != "be" { return nil }
            }
        }
        let isNegated = sawNegation || negated[start]
        return (type, holder, isNegated)
    }

    static func possessive(_ word: String) -> Bool {
        ["my", "our", "his", "her", "their", "your"].contains(word)
    }

    /// The complement of a mental-state word: the rest of its clause, without a leading "that".
    func complement(_ doc: Document, after index: Int, in sentence: Range<Int>) -> String {
        var start = index
        while start < sentence.upperBound && Self.complementOpeners.contains(doc.tokens[start].lower) { start += 1 }
        var end = start
        while end < sentence.upperBound && !doc.tokens[end].isTerminal && !(doc.tokens[end].isClauseBreak && doc.tokens[end].lower != ",") {
            if doc.tokens[end].lower == "," && end > start { break }
            end += 1
        }
        return doc.excerpt(of: start..<end)
    }

    /// States listed in a result at most (see `Document.excerptTokens`).
    public static let maxStates = 64
}
