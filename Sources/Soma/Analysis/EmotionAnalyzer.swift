/// What the writer feels and how strongly.
public struct EmotionResult: Codable, Sendable, Equatable {
    public struct Sentence: Codable, Sendable, Equatable {
        public var text: String
        public var valence: Double
        public var dominant: String
    }

    /// Overall valence in [-1, 1] (VADER's normalised compound).
    public var valence: Double
    /// Activation in [0, 1].
    public var arousal: Double
    /// Plutchik's eight emotions, each in [0, 1].
    public var emotions: [String: Double]
    /// The strongest emotion, or `neutral`.
    public var dominant: String
    public var sentences: [Sentence]
}

/// VADER-style valence and Plutchik emotions from a weighted lexicon.
///
/// Rules: a negator within three words flips and damps valence (×−0.74; ×−1 with an intensifying
/// tail such as "at all") and moves a negated emotion toward its opposite; boosters and dampeners scale (VADER's ±0.293, decayed with
/// distance); ALL CAPS in mixed-case text amplifies; "but" weighs the clause before it half and the
/// clause after it one and a half times; "!" (up to four) and "??" add emphasis.
public struct EmotionAnalyzer: Analyzer {
    public static let module = Module.emotion
    public let model: ModuleModel

    static let capsIncrement: Float = 0.733
    static let negationScalar: Float = -0.74
    static let alpha: Float = 15
    /// The smallest raw emotion mass that names a dominant emotion.
    static let dominantThreshold: Float = 0.25

    /// Per pattern, its class as the rules read it (a String comparison per match was measurable).
    private let kinds: [Kind]
    enum Kind: UInt8 { case lex, degree, contrast, hedge, instruction, tail, other }
    /// Per pattern, whether it is a lexicon entry with a feeling (a zero-weight compound is not).
    let feeling: [Bool]
    private let emotionDims: [Int]
    private let negators: Scope.Words
    /// The `schedule` marks (a side class: not in the model's main trie, `Module.sideClasses`).
    private let schedule: PatternMatcher
    private let valenceDim: Int
    private let arousalDim: Int
    private let scaleDim: Int

    public init(model: ModuleModel) {
        self.model = model
        let kinds: [Kind] = model.patterns.map {
            switch $0.label {
            case "lex": .lex
            case "degree": .degree
            case "contrast": .contrast
            case "hedge": .hedge
            case "instruction": .instruction
            case "tail": .tail
            default: .other
            }
        }
        self.kinds = kinds
        // (`Module.dimensions` builds its list on every call: count it once, not once per pattern.)
        let dimensions = model.module.dimensions.count
        feeling = kinds.indices.map { i in kinds[i] == .lex && (0..<dimensions).contains { model.weights[i, $0] != 0 } }
        emotionDims = Emotion.allCases.map { model.dimension($0.rawValue)! }
        negators = Scope.Words(adding: model.patterns.filter { $0.label == "negator" && $0.tokens.count == 1 }.map { $0.tokens[0] })
        schedule = PatternMatcher(patterns: model.patterns, where: { $0.label == "schedule" })
        valenceDim = model.dimension("valence")!
        arousalDim = model.dimension("arousal")!
        scaleDim = model.dimension("scale")!
    }

    struct SentenceScore {
        var sum: Float = 0
        var emotions = [Float](repeating: 0, count: 8)
        var arousal: Float = 0
        var arousalWeight: Float = 0
        var hits = 0
        /// The sentence opens with a "but"-type contrast ("But…", "However,…"): it turns against
        /// the sentences before it, and the document weighs the two sides.
        var opensTurn = false
        /// All-caps words that are not lexicon entries ("AGAIN", "SIX"): shouting.
        var shouts = 0
        var words = 0
    }

    public func analyze(_ doc: Document) -> EmotionResult {
        let ids = model.matcher.tokenIDs(doc)
        let negated = Scope.negationMask(doc, words: negators)
        let mixedCase = doc.tokens.contains { $0.isWord && !$0.isAllCaps && $0.text.unicodeScalars.contains { $0.properties.isLowercase } }
        var scores: [SentenceScore] = []
        scores.reserveCapacity(doc.sentences.count)
        var sentences: [EmotionResult.Sentence] = []
        var exclamations = 0
        var capsWords = 0
        for sentence in doc.sentences {
            let score = scoreSentence(doc, sentence, ids: ids, negated: negated, mixedCase: mixedCase, capsWords: &capsWords, exclamations: &exclamations)
            scores.append(score)
            sentences.append(
                .init(
                    text: doc.trimmedText(of: sentence),
                    valence: rounded(Self.normalize(score.sum)),
                    dominant: Self.dominant(score.emotions, valence: score.sum)
                ))
        }
        // A lone word of praise opening a longer text ("Wonderful. The boss 'forgot' to mention…")
        // without an exclamation mark is sarcasm: it counts against, as anger.
        if scores.count > 1, let first = doc.sentences.first, Self.isLonePraise(doc, first), scores[0].sum > 0 {
            scores[0].sum = -scores[0].sum
            scores[0].emotions = [Float](repeating: 0, count: 8)
            scores[0].emotions[Self.angerIndex] = Self.dominantThreshold * 2
        }
        // A sentence that opens with a turn ("…. But the plot went nowhere.") weighs the sentences
        // before it half and itself and the rest one and a half times, as a "but" inside a
        // sentence does; an unmarked side takes the sign opposite to the other (see `turned`).
        let turn = scores.indices.dropFirst().first(where: { scores[$0].opensTurn })
        if let k = turn {
            let before = scores[..<k].reduce(0) { $0 + $1.sum }
            let after = scores[k...].reduce(0) { $0 + $1.sum }
            if let implied = Self.turned(before: before, after: after) {
                scores[k].sum += implied
                scores[k].emotions[Self.sadnessIndex] += Self.impliedEmotion(implied)
            }
        }
        var total = SentenceScore()
        for (i, score) in scores.enumerated() {
            let w: Float = turn.map { i < $0 ? Self.turnBefore : Self.turnAfter } ?? 1
            total.sum += score.sum * w
            total.hits += score.hits
            total.shouts += score.shouts
            total.arousal += score.arousal
            total.arousalWeight += score.arousalWeight
            for k in 0..<8 { total.emotions[k] += score.emotions[k] * w }
        }
        // Staccato ("Move. Your. Car.") is shouting: three or more one-word sentences in a row.
        var run = 0
        for score in scores {
            run = score.words == 1 ? run + 1 : 0
            if run == 3 { total.shouts += 1 }
        }
        // Shouting ("Printer jammed. AGAIN.") with nothing positive said is anger.
        if total.shouts > 0, total.sum <= 0 {
            let n = Float(min(total.shouts, 3))
            total.sum -= Self.shoutValence * n
            total.emotions[Self.angerIndex] += Self.shoutAnger * n
        }
        // A notice, timetable or announcement informs: its feeling words name things ("Bereavement
        // drop-in sessions, Tuesdays 2-4pm"), and the text is neutral (`isImpersonal`, `hasScheduleMark`).
        if total.shouts == 0, exclamations == 0, abs(total.sum) < Self.noticeValence,
            Self.isImpersonal(doc), hasScheduleMark(doc) || Self.hasClockTime(doc)
        {
            total.sum = 0
            total.emotions = [Float](repeating: 0, count: 8)
            for k in sentences.indices {
                sentences[k].valence = 0
                sentences[k].dominant = "neutral"
            }
        }
        var emotions = [String: Double](minimumCapacity: Emotion.allCases.count)
        for (k, e) in Emotion.allCases.enumerated() {
            emotions[e.rawValue] = rounded(total.emotions[k] / (total.emotions[k] + 1))
        }
        var arousal: Float = 0
        if total.arousalWeight > 0 {
            let mean = total.arousal / total.arousalWeight
            arousal = mean * min(1, 0.55 + 0.15 * Float(total.hits))
        }
        arousal += 0.05 * Float(min(exclamations, 4)) + (capsWords > 0 ? 0.1 : 0)
        return EmotionResult(
            valence: rounded(Self.normalize(total.sum)),
            arousal: rounded(clamp(arousal, 0, 1)),
            emotions: emotions,
            dominant: Self.dominant(total.emotions, valence: total.sum, emphatic: exclamations > 0 || capsWords > 0 || total.shouts > 0),
            sentences: sentences
        )
    }

    /// Whether a schedule mark (class `schedule`: a weekday, a month, "Room 4", "10 am") is in the text.
    func hasScheduleMark(_ doc: Document) -> Bool {
        !schedule.longestMatches(in: doc, ids: schedule.tokenIDs(doc)).isEmpty
    }

    func scoreSentence(
        _ doc: Document, _ sentence: Range<Int>, ids: [Int32], negated: [Bool], mixedCase: Bool,
        capsWords: inout Int, exclamations: inout Int
    ) -> SentenceScore {
        var score = SentenceScore()
        let matches = model.matcher.longestMatches(in: doc, ids: ids, range: sentence)
        // Degree words: their scalar sits on the last token they cover.
        var degreeAt: [Int: Float] = [:]
        var contrastAt: [(index: Int, before: Float, after: Float)] = []
        // One pass over the sentence's tokens: "!" and "?" for emphasis, and repetition ("Why why
        // why", "Please, PLEASE", "?!"), which is shouting.
        var bangs = 0
        var questions = 0
        var capitals = false
        var previousWord = -1
        // Through the buffer, fields are read in place: `doc.tokens[i].key` copies the whole
        // `Token` (two Strings retained and released), which the engine gate measured.
        doc.tokens.withUnsafeBufferPointer { t in
            for i in sentence {
                if t[i].kind == .word {
                    score.words += 1
                    if t[i].isAllCaps { capitals = true }
                    if previousWord >= 0, t[previousWord].key == t[i].key, t[previousWord].lower == t[i].lower { score.shouts += 1 }
                    previousWord = i
                    continue
                }
                // Keys first; the word confirms a hit (as in `WordTable`).
                let key = t[i].key
                if key == Self.bangKey, t[i].lower == "!" {
                    bangs += 1
                    if i > sentence.lowerBound, t[i - 1].key == Self.questionKey { score.shouts += 1 }
                } else if key == Self.questionKey, t[i].lower == "?" {
                    questions += 1
                } else if key == Self.commaKey, t[i].lower == "," {
                    continue
                }
                previousWord = -1
            }
        }
        var hedged = false
        var instructionAt: [Int] = []
        var tails: [Range<Int>] = []
        for m in matches {
            switch kinds[m.pattern] {
            case .hedge: hedged = true
            case .tail: tails.append(m.range)
            case .instruction:
                // Only where it could open the sentence or its main clause (`opensInstruction`).
                if m.range.lowerBound < sentence.lowerBound + 3 || doc.tokens[m.range.lowerBound - 1].lower == "," {
                    instructionAt.append(m.range.lowerBound)
                }
            case .degree: degreeAt[m.range.upperBound - 1] = model.weights[m.pattern, scaleDim]
            case .contrast:
                let before = model.weight(m.pattern, "before")
                let after = model.weight(m.pattern, "after")
                contrastAt.append((m.range.lowerBound, before == 0 ? 1 : before, after == 0 ? 1 : after))
            case .lex, .other: break
            }
        }
        // Only the first contrast word of a sentence re-weights it, as in VADER. A concessive word
        // opening the sentence ("Although X, Y") weighs its own clause, up to the comma, as the "after"
        // part and the main clause after the comma as the "before" part.
        // "Still, …" opening a sentence turns against the sentences before it ("still" alone is
        // not a turn: "still waiting").
        if sentence.count > 2, doc.tokens[sentence.lowerBound].lower == "still", doc.tokens[sentence.lowerBound + 1].lower == "," {
            score.opensTurn = true
        }
        var contrast = contrastAt.first
        if let c = contrast, c.index == sentence.lowerBound {
            if c.before < c.after {
                // "But …" opening the sentence turns against the sentences before it (`analyze`).
                score.opensTurn = true
                contrast = contrastAt.dropFirst().first
            } else if let comma = (c.index..<sentence.upperBound).first(where: { doc.tokens[$0].isClauseBreak }) {
                contrast = (comma, c.after, c.before)
            }
        } else if let c = contrast, c.before > c.after, c.index > sentence.lowerBound, doc.tokens[c.index - 1].isClauseBreak,
            Self.afterthoughts.contains(doc.tokens[c.index])
        {
            // ", though …" / ", although …" after a finished clause is an afterthought that turns
            // against it, like "but" (the blind set's label guide: the clause after the turn decides).
            contrast = (c.index, c.after, c.before)
        }
        var sides: (before: Float, after: Float) = (0, 0)
        // A notice's heading ("Warning: …", "Bereavement leave: …") names a category, not a feeling;
        // an instruction ("Remove the dead batteries…", "If you smell gas, open the windows") says
        // what to do, and the things it names are not the writer's feelings, unless it exclaims.
        let heading = Self.headingEnd(doc, sentence)
        let exclaims = bangs > 0
        if !exclaims, instructionAt.contains(where: { Self.opensInstruction(doc, sentence, at: $0) }) {
            if mixedCase, capitals { score.shouts += shouts(doc, sentence, matches) }
            return score
        }
        let emphatic = tails.isEmpty ? [] : emphaticNegation(doc, sentence, tails: tails)
        // Title words are looked for only once a capitalised word inside the sentence is a hit.
        var titles: Set<Int>?
        for m in matches where kinds[m.pattern] == .lex && m.range.lowerBound >= heading {
            if !exclaims, m.range.lowerBound > sentence.lowerBound, doc.tokens[m.range.lowerBound].isCapitalized {
                if titles == nil { titles = Self.titleWords(doc, sentence) }
                if titles!.contains(m.range.lowerBound) { continue }
            } else if !exclaims, m.range.lowerBound == sentence.lowerBound, m.range.upperBound < sentence.upperBound,
                doc.tokens[m.range.upperBound].isCapitalized
            {
                if titles == nil { titles = Self.titleWords(doc, sentence) }
                if titles!.contains(m.range.lowerBound) { continue }
            }
            // A word that is also a degree word ("so", "pretty") acts as a degree word before another hit.
            if degreeAt[m.range.upperBound - 1] != nil, m.range.count == 1,
                let next = matches.first(where: { $0.range.lowerBound == m.range.upperBound }), kinds[next.pattern] == .lex
            {
                continue
            }
            var emotion = emotionDims.map { model.weights[m.pattern, $0] }
            let emotionMass = emotion.reduce(0, +)
            let lexValence = model.weights[m.pattern, valenceDim]
            var valence = Self.blendedValence(lexValence, emotion)
            if valence == 0 && emotionMass == 0 { continue }
            let boost = Scope.degree(doc, at: m.range.lowerBound, within: sentence) { degreeAt[$0] }
            if valence != 0 { valence += boost * (valence > 0 ? 1 : -1) }
            var factor = 1 + boost * 1.2
            let token = doc.tokens[m.range.lowerBound]
            if token.isAllCaps && mixedCase {
                valence += Self.capsIncrement * (valence >= 0 ? 1 : -1)
                factor *= 1.25
                capsWords += 1
            }
            if emphatic.contains(where: { $0.contains(m.range.lowerBound) }) {
                valence *= Self.emphaticNegationScalar
                emotion = Self.negate(emotion)
            } else if negated[m.range.lowerBound] {
                valence *= Self.negationScalar
                emotion = Self.negate(emotion)
            }
            if let contrast {
                let isBefore = m.range.lowerBound < contrast.index
                if isBefore { sides.before += valence } else { sides.after += valence }
                let w = isBefore ? contrast.before : contrast.after
                valence *= w
                factor *= w
            }
            score.sum += valence
            for k in 0..<8 { score.emotions[k] += max(0, emotion[k] * factor) }
            var a = model.weights[m.pattern, arousalDim]
            if a == 0 { a = min(1, abs(lexValence) / 4 * 0.8 + 0.1) }
            let w = max(abs(valence), emotionMass, 0.5)
            score.arousal += a * w
            score.arousalWeight += w
            score.hits += 1
        }
        // A turn with one side unmarked: "The rooms were spotless, but the walls were thin" says
        // the walls were a let-down without a word for it.
        if let contrast, let implied = Self.turned(before: sides.before, after: sides.after) {
            score.sum += implied * contrast.after
            score.emotions[Self.sadnessIndex] += Self.impliedEmotion(implied) * contrast.after
        }
        // A hedge ("fine, I suppose") turns faint praise into disappointment.
        if hedged, score.sum > 0, score.sum < Self.faintPraise {
            score.sum *= Self.hedgeScalar
            score.emotions[Self.sadnessIndex] += max(score.emotions[0] + score.emotions[1], Self.dominantThreshold)
            score.emotions[0] = 0
            score.emotions[1] = 0
        }
        if mixedCase, capitals { score.shouts += shouts(doc, sentence, matches) }
        // Punctuation emphasis.
        exclamations += bangs
        if score.sum != 0 {
            var emphasis = Float(min(bangs, 4)) * 0.292
            if questions > 1 { emphasis += min(Float(questions) * 0.18, 0.96) }
            score.sum += emphasis * (score.sum > 0 ? 1 : -1)
            if bangs > 0 { for k in 0..<8 { score.emotions[k] *= 1 + 0.1 * Float(min(bangs, 4)) } }
        }
        return score
    }

    /// Lexicon valence blended with the valence its emotions imply (joy, trust and anticipation
    /// positive; fear, sadness, disgust and anger negative), so a word's sign and its emotions agree:
    /// "lonely" is sadder than its VADER score alone says. A word with emotions but no valence takes
    /// the implied one.
    static func blendedValence(_ valence: Float, _ e: [Float]) -> Float {
        let implied = (e[0] + e[1] + e[7] - e[2] - e[4] - e[5] - e[6]) * impliedScale
        guard implied != 0 else { return valence }
        guard valence != 0 else { return implied }
        return (1 - impliedShare) * valence + impliedShare * implied
    }

    /// A negation with an intensifying tail ("not … at all", "didn't enjoy it in the slightest")
    /// flips fully instead of VADER's damped ×−0.74.
    static let emphaticNegationScalar: Float = -1

    /// The token ranges a negation with an intensifying tail governs, one per tail: from the word
    /// after the negator (at most `tailReach` words before the tail, in the same clause) up to the
    /// tail, and the `Scope` window's three words after it, the tail's own words not counted ("not
    /// in the slightest worried"). A tail with no negator before it ("no signs at all" has one;
    /// "at all costs" none) governs nothing.
    func emphaticNegation(_ doc: Document, _ sentence: Range<Int>, tails: [Range<Int>]) -> [Range<Int>] {
        tails.compactMap { tail in
            var j = tail.lowerBound - 1
            var words = 0
            while j >= sentence.lowerBound, words <= Self.tailReach {
                if Scope.endsScope(doc, at: j) { return nil }
                if Scope.isNegator(doc, at: j, words: negators) {
                    var end = tail.upperBound
                    while end < sentence.upperBound, end - tail.upperBound < Scope.window, !Scope.endsScope(doc, at: end) { end += 1 }
                    return (j + 1)..<end
                }
                if doc.tokens[j].isWord { words += 1 }
                j -= 1
            }
            return nil
        }
    }

    /// Words a negator may stand before its tail ("I was not, if I'm honest, … at all" is out of reach).
    static let tailReach = 6

    static let afterthoughts: WordSet = ["although", "though"]
    static let sadnessIndex = 4
    static let angerIndex = 6
    /// Weights of the sentences before and after one that opens with a turn (VADER's "but").
    static let turnBefore: Float = 0.5
    static let turnAfter: Float = 1.5
    /// Raw valence below which a hedged sentence's praise is faint.
    static let faintPraise: Float = 2.2
    static let hedgeScalar: Float = -0.6
    static let shoutValence: Float = 0.9
    static let shoutAnger: Float = 0.35

    /// What a turn adds to its later side: "X, but Y" says Y goes against X, so a later side that
    /// is unmarked, or marked the other way but more faintly, counts as strongly against X as X is
    /// for it ("Thanks for the quick turnaround. However, the figures still don't match"). Nil when
    /// the later side already outweighs the earlier one or agrees with it ("good, but great").
    static func turned(before: Float, after: Float) -> Float? {
        guard before != 0, after * before <= 0, abs(after) < abs(before) else { return nil }
        return -before - after
    }

    /// Sadness (disappointment) for an implied negative turn.
    static func impliedEmotion(_ implied: Float) -> Float { implied < 0 ? min(1, -implied / 4) : 0 }

    static let impliedScale: Float = 2.5
    static let impliedShare: Float = 0.4

    /// A negated emotion keeps a little of itself and lends some weight to what its negation means:
    /// "not happy" reads as sadness, "don't trust" as wariness, "not looking forward" as dread.
    static func negate(_ e: [Float]) -> [Float] {
        var out = e.map { $0 * 0.1 }
        func add(_ to: Emotion, _ amount: Float) { out[Emotion.allCases.firstIndex(of: to)!] += amount }
        let joy = e[0]
        let trust = e[1]
        let surprise = e[3]
        let anticipation = e[7]
        add(.sadness, joy * 0.6)
        add(.fear, trust * 0.35)
        add(.disgust, trust * 0.2)
        add(.sadness, anticipation * 0.2)
        add(.fear, anticipation * 0.2)
        add(.anticipation, surprise * 0.1)
        return out
    }

    static func normalize(_ score: Float) -> Float {
        guard score != 0 else { return 0 }
        return clamp(score / (score * score + alpha).squareRoot(), -1, 1)
    }

    static func dominant(_ emotions: [Float], valence: Float, emphatic: Bool = false) -> String {
        var best = -1
        var bestValue: Float = 0
        for k in 0..<8 where emotions[k] > bestValue {
            best = k
            bestValue = emotions[k]
        }
        if best >= 0, bestValue >= dominantThreshold { return Emotion.allCases[best].rawValue }
        // Clear valence without emotion words: the plainest emotion of that sign.
        let compound = normalize(valence)
        if compound <= -0.5 { return emphatic ? Emotion.anger.rawValue : Emotion.sadness.rawValue }
        if compound >= 0.5 { return Emotion.joy.rawValue }
        return "neutral"
    }
}
