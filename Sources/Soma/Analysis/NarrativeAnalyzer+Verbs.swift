/// The verb rules of the narrative analyser: the closed-class words they test, the per-token
/// look-ups done once per document, and the finite verb group at a token (main verb and tense).
extension NarrativeAnalyzer {
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

    /// Words that float between an auxiliary and its verb ("we'll both take", "had only nodded").
    static let floating: WordSet = ["both", "all", "each", "only", "just", "also", "already", "still", "ever", "even"]
    static let prepositions: WordSet = [
        "of", "in", "on", "at", "for", "with", "to", "from", "by", "into", "onto", "about", "under", "over", "near", "across", "through",
        "around", "behind", "past", "after", "before", "during", "without",
    ]
    static let auxiliaries: WordSet = ["have", "has", "had", "be", "been", "being", "do", "did", "is", "am", "are", "was", "were"]
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
        // Tokens read in place (see `PatternMatcher.tokenIDs`).
        doc.tokens.withUnsafeBufferPointer { tokens in
            var masks = [UInt64](repeating: 0, count: tokens.count)
            var closed = [Closed](repeating: [], count: tokens.count)
            for i in tokens.indices {
                masks[i] = model.labelMask(of: tokens[i])
                let flags = Self.closed[tokens[i]] ?? []
                closed[i] = tokens[i].kind == .number ? flags.union(.number) : flags
            }
            return Lookup(masks: masks, closed: closed)
        }
    }

    /// A verb form by the lexicon, or — for a word the model does not know at all — by its ending:
    /// the verb table then only sharpens the analysis, so pruning rare verb forms costs little.
    func isVerb(_ doc: Document, _ i: Int, _ bit: UInt64, _ look: Lookup) -> Bool {
        if look.masks[i] & bit != 0 { return true }
        guard look.masks[i] & bits.anyClass == 0 else { return false }
        let token = doc.tokens[i]
        guard token.isAlphabetic else { return false }
        // (ASCII: a byte is a scalar, and counting bytes is O(1) where counting scalars walks the word.)
        guard (token.isASCII ? token.lower.utf8.count : token.lower.unicodeScalars.count) >= 4 else { return false }
        func ends(_ suffix: StaticString) -> Bool { token.lowerEnds(with: suffix) }
        switch bit {
        case bits.verbPast: return ends("ed")
        case bits.verbPP: return ends("ed") || ends("en")
        case bits.verbIng: return ends("ing")
        case bits.verb3sg:
            // Plural nouns by their suffix ("sessions", "activities", "payments") are no verbs.
            return ends("s") && !ends("ss") && !ends("us") && !ends("ions") && !ends("ities") && !ends("ments") && !ends("ships")
        case bits.verbBase: return !ends("ed") && !ends("ing") && !ends("ly") && !ends("s")
        default: return false
        }
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
                if bit == bits.verbPP, isVerb(doc, j, bits.verbPast, look), doc.tokens[j].lowerEnds(with: "ed") { return (doc.tokens[j].lower, j - i + 1) }
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
        // (The flags first: they are bit tests, the words String comparisons, for every word.)
        if i + 1 < clause.upperBound, pc.contains(.presentBe) || pc.contains(.pastBe) || pm & bits.first != 0, w == "going" || w == "gonna" {
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
        // "was going to", "am going to" (asked only after a form of "be").
        func goingTo() -> Bool { next(i + 1) == "going" && next(i + 2) == "to" }
        if c.contains(.pastBe) {
            if goingTo() { return nil }
            if let (v, n) = main(after: i, bits.verbIng) { return (v, "past", n) }
            if let (v, n) = main(after: i, bits.verbPP) { return (v, "past", n) }
            return (w, "past", 1)
        }
        if c.contains(.presentBe) {
            // "I'm going to run": the future is read at "going".
            if goingTo() { return nil }
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
        // A capitalised word is a name before a verb only when it is no verb form, weekday or month
        // and no possessive itself: "Training sessions run", "Opening hours", "Wednesday
        // afternoons", "Children's activities" are nouns, "Anna runs" is a verb.
        let nameBefore =
            previousCapitalized && pm & (bits.verbPast | bits.verbPP | bits.verbIng) == 0
            && !AgentDetector.notNames.contains(doc.tokens[i - 1]) && !doc.tokens[i - 1].lowerEnds(with: "'s")
        let subject3sg = pc.contains(.subject) || pm & (bits.first | bits.third | bits.adverb) != 0 || nameBefore
        if is3sg && (subject3sg || nounSubject) { return (w, "present", 1) }
        // "we always walk": the subject before the adverbs.
        var s = i - 1
        while s > clause.lowerBound, look.masks[s] & bits.adverb != 0 { s -= 1 }
        let subject = s >= clause.lowerBound ? doc.tokens[s].lower : ""
        if isBase && subjectBefore && (subject == "i" || subject == "you" || subject == "we" || subject == "they") { return (w, "present", 1) }
        return nil
    }
}
