/// Finds the people a text talks about: pronouns, names, and kinship or role nouns with their
/// determiner ("my mother", "the teacher"). Shared by theory of mind and narrative, reading the
/// `agent.*` classes of their models.
struct AgentDetector: Sendable {
    struct Agent: Equatable {
        var range: Range<Int>
        /// Canonical name: "i", "she", "my mother", "maria".
        var name: String
        /// The writer ("i", "me", "my", …) or the writer's group ("we").
        var isSelf: Bool
        /// Can hold a mental state as a subject (not "me", "him", "her", "them").
        var isSubject: Bool
    }

    let model: ModuleModel
    /// The model's class bits, looked up once: per token the test is one probe and a bit test.
    private let kinBit: UInt64
    private let roleBit: UInt64
    private let nameBit: UInt64
    private let anyClass: UInt64
    private let personBits: UInt64

    init(model: ModuleModel) {
        self.model = model
        kinBit = model.bit(for: "agent.kin")
        roleBit = model.bit(for: "agent.role")
        nameBit = model.bit(for: "agent.name")
        anyClass = model.bit(for: "")
        personBits = kinBit | roleBit
    }

    /// Whether the token's word is a single-word pattern of the class whose bit is `bit`.
    @inline(__always)
    private func has(_ t: Token, _ bit: UInt64) -> Bool { model.labelMask(of: t) & bit != 0 }

    /// Whether the token's word is a single-word pattern of any class.
    @inline(__always)
    private func known(_ t: Token) -> Bool {
        model.labelMask(of: t) & anyClass != 0
    }

    static let collective: WordSet = ["everyone", "everybody", "nobody", "someone", "somebody", "people", "anyone"]
    static let verbLike: WordSet = [
        "was", "is", "had", "has", "will", "would", "can", "could", "didn't", "doesn't", "won't", "never", "always", "said", "told",
    ]

    static let pronouns = WordTable<Pronoun>(pronounList.map { ($0.0, Pronoun(name: $0.1.name, subject: $0.1.subject)) })

    struct Pronoun: Sendable {
        var name: String
        var subject: Bool
    }

    private static let pronounList: KeyValuePairs<String, (name: String, subject: Bool)> = [
        "i": ("i", true), "i'm": ("i", true), "i've": ("i", true), "i'd": ("i", true), "i'll": ("i", true), "im": ("i", true),
        "me": ("i", false), "my": ("i", false), "myself": ("i", false), "mine": ("i", false),
        "we": ("we", true), "we're": ("we", true), "we've": ("we", true), "we'd": ("we", true), "we'll": ("we", true),
        "us": ("we", false), "our": ("we", false), "ourselves": ("we", false),
        "you": ("you", true), "you're": ("you", true), "you've": ("you", true), "you'd": ("you", true), "you'll": ("you", true),
        "your": ("you", false), "yourself": ("you", false),
        "he": ("he", true), "he's": ("he", true), "he'd": ("he", true), "he'll": ("he", true), "him": ("he", false), "his": ("he", false),
        "himself": ("he", false),
        "she": ("she", true), "she's": ("she", true), "she'd": ("she", true), "she'll": ("she", true), "her": ("she", false), "herself": ("she", false),
        "they": ("they", true), "they're": ("they", true), "they've": ("they", true), "they'd": ("they", true), "they'll": ("they", true),
        "them": ("they", false), "their": ("they", false), "themselves": ("they", false),
    ]
    static let determiners: WordSet = ["my", "our", "his", "her", "their", "your", "the", "a", "an", "this", "that", "mum's", "mom's", "one"]
    static let possessiveOwner: [String: String] = ["my": "i", "our": "we", "his": "he", "her": "she", "their": "they", "your": "you"]
    static let notNames: WordSet = [
        "i", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "january", "february",
        "march", "april", "may", "june", "july", "august", "september", "october", "november", "december",
        "god", "christmas", "easter", "english", "ok", "okay", "tv", "mr", "mrs", "ms", "dr", "oh", "hey", "yes", "no",
    ]

    /// The closed-class words the detector asks about, in one table: one probe per token.
    struct ClosedWord: Sendable {
        var pronoun: Pronoun?
        var determiner = false
        var collective = false
        var quantifier = false
    }

    static let closed: WordTable<ClosedWord> = {
        var table = WordTable<ClosedWord>()
        for (w, p) in pronouns.entries { table.insert(w, ClosedWord(pronoun: p)) }
        for w in determiners.words { table.update(w, default: ClosedWord()) { $0.determiner = true } }
        for w in collective.words { table.update(w, default: ClosedWord()) { $0.collective = true } }
        for w in quantifiers.words { table.update(w, default: ClosedWord()) { $0.quantifier = true } }
        return table
    }()

    /// The agent starting at token `i`, if any.
    func agent(in doc: Document, at i: Int) -> Agent? {
        let t = doc.tokens[i]
        guard t.isWord else { return nil }
        let closed = doc.closed[i].contains(.agentOpener) ? Self.closed[t] : nil
        if let p = closed?.pronoun {
            // "my mother", "our little boy", "my aunt's farm": the person noun makes the agent, not the possessive.
            if !p.subject, let phrase = personPhrase(doc, from: i + 1, modifiers: closed?.determiner == true ? 2 : 0) {
                return Agent(
                    range: i..<phrase.upperBound, name: ([t.lower] + Self.words(of: phrase, in: doc)).joined(separator: " "), isSelf: false, isSubject: true)
            }
            if t.lower == "her" || t.lower == "his" { return Agent(range: i..<(i + 1), name: p.name, isSelf: false, isSubject: false) }
            return Agent(range: i..<(i + 1), name: p.name, isSelf: p.name == "i" || p.name == "we", isSubject: p.subject)
        }
        if closed?.determiner == true {
            // "the mayor", "an old man", "the upstairs tenants", "the police officer"; "that" and
            // "this" open clauses as often as noun phrases, so they take no modifier ("that made men cry").
            let modifiers = Self.demonstratives.contains(t) ? 0 : 2
            guard let phrase = personPhrase(doc, from: i + 1, modifiers: modifiers) else { return nil }
            let article = t.lower == "a" || t.lower == "an"
            return Agent(
                range: i..<phrase.upperBound, name: ((article ? [] : [t.lower]) + Self.words(of: phrase, in: doc)).joined(separator: " "), isSelf: false,
                isSubject: true)
        }
        if t.isCapitalized, let stem = Self.possessiveStem(t), !Self.notNames.contains(stem), !Self.sentenceStarters.contains(stem),
            model.labelMask(of: stem) & (kinBit | roleBit) == 0,
            model.labelMask(of: stem) & nameBit != 0 || !t.isAllCaps && i + 1 < doc.tokens.count
        {
            // "Daniel's wife": the kin or role noun after a name's possessive is the agent.
            if let phrase = personPhrase(doc, from: i + 1, modifiers: 2) {
                return Agent(
                    range: i..<phrase.upperBound, name: ([t.lower] + Self.words(of: phrase, in: doc)).joined(separator: " "), isSelf: false, isSubject: true)
            }
        }
        if isName(doc, at: i) {
            var end = i + 1
            if end < doc.tokens.count, doc.tokens[end].isCapitalized, !Self.notNames.contains(doc.tokens[end]),
                has(doc.tokens[end], nameBit) || isSurname(doc, end)
            {
                end += 1
            }
            return Agent(range: i..<end, name: t.lower, isSelf: false, isSubject: true)
        }
        if t.isCapitalized, has(t, kinBit) {
            // "Grandad remembers…": a capitalised kinship word without a determiner is used as a name;
            // before a name it is a title ("Aunt Flo").
            if i + 1 < doc.tokens.count, doc.tokens[i + 1].isCapitalized, !Self.notNames.contains(doc.tokens[i + 1]),
                has(doc.tokens[i + 1], nameBit) || isName(doc, at: i + 1)
            {
                return Agent(range: i..<(i + 2), name: "\(t.lower) \(doc.tokens[i + 1].lower)", isSelf: false, isSubject: true)
            }
            return Agent(range: i..<(i + 1), name: t.lower, isSelf: false, isSubject: true)
        }
        if closed?.collective == true {
            return Agent(range: i..<(i + 1), name: t.lower, isSelf: false, isSubject: true)
        }
        // "most drivers", "both parents", "every teacher"
        if closed?.quantifier == true, t.lower != "no", let phrase = personPhrase(doc, from: i + 1, modifiers: 0) {
            return Agent(
                range: i..<phrase.upperBound, name: ([t.lower] + Self.words(of: phrase, in: doc)).joined(separator: " "), isSelf: false, isSubject: true)
        }
        // A bare plural of a role or kinship noun: "thieves broke in", "Villagers say", "police
        // officers". Not after a word that may modify it ("Security staff", "angry villagers"): the
        // phrase is longer than the noun, and theory of mind's noun-phrase reading finds it.
        if t.isAlphabetic, isPersonNoun(t), i == 0 || !isModifier(doc, i - 1) && Self.possessiveStem(doc.tokens[i - 1]) == nil,
            let phrase = personPhrase(doc, from: i, modifiers: 0)
        {
            let words = Self.words(of: phrase, in: doc)
            guard let last = words.last, Self.isPlural(last) || Self.massPeople.contains(last) else { return nil }
            return Agent(range: i..<phrase.upperBound, name: words.joined(separator: " "), isSelf: false, isSubject: true)
        }
        return nil
    }

    /// Determiners that open clauses as often as noun phrases: no modifier may follow them.
    static let demonstratives: WordSet = ["this", "that", "one"]
    /// Role nouns that name a group without a plural ending ("Police said…").
    static let massPeople: WordSet = ["police", "staff", "crew", "folk", "folks"]

    static func isPlural(_ word: String) -> Bool {
        (word.hasSuffix("s") && !word.hasSuffix("ss")) || word.hasSuffix("men") || word == "children" || word == "people"
    }

    /// The word before a possessive "'s" or a plural's "s'" ("mayor's", "villagers'"), if `t` is one.
    static func possessiveStem(_ t: Token) -> String? {
        guard !t.isAlphabetic else { return nil }
        let w = t.lower
        if w.hasSuffix("'s"), w.unicodeScalars.count > 3 { return String(w.dropLast(2)) }
        if w.hasSuffix("s'"), w.unicodeScalars.count > 3 { return String(w.dropLast(1)) }
        return nil
    }

    /// A person noun phrase from token `j`: at most `modifiers` modifiers, then one or more
    /// kinship or role nouns ("old man", "upstairs tenants", "woman driver"), the last possibly
    /// possessive ("my aunt's farm" → "aunt"). Its tokens; `words(of:in:)` names them. Builds no
    /// String unless it meets a possessive: it runs at every determiner of every text.
    private func personPhrase(_ doc: Document, from j: Int, modifiers: Int) -> Range<Int>? {
        var k = j
        while k < doc.tokens.count {
            let tok = doc.tokens[k]
            if let possessive = personNoun(tok) {
                var end = k + 1
                if !possessive {
                    // compounds: "the police officer", "a woman driver"
                    while end < doc.tokens.count, let more = personNoun(doc.tokens[end]) {
                        end += 1
                        if more { break }
                    }
                }
                return j..<end
            }
            guard k - j < modifiers, isModifier(doc, k) else { return nil }
            k += 1
        }
        return nil
    }

    /// The words of a phrase from `personPhrase`, a possessive's "'s" dropped.
    private static func words(of range: Range<Int>, in doc: Document) -> [String] {
        range.map { Self.possessiveStem(doc.tokens[$0]) ?? doc.tokens[$0].lower }
    }

    /// Whether `t` is a kinship or role noun: nil if not, true if possessive ("aunt's"), false if plain.
    private func personNoun(_ t: Token) -> Bool? {
        guard t.isWord else { return nil }
        if t.isAlphabetic { return isPersonNoun(t) ? false : nil }
        if let stem = Self.possessiveStem(t) { return model.labelMask(of: stem) & personBits != 0 ? true : nil }
        return isPersonNoun(t) ? false : nil
    }

    /// A word that can stand between a determiner and its person noun ("old", "upstairs", "finance").
    /// (`Document.closed` already says whether the word is in `Self.closed`: no probe of it.)
    private func isModifier(_ doc: Document, _ i: Int) -> Bool {
        let t = doc.tokens[i]
        return t.isAlphabetic && !doc.closed[i].contains(.agentOpener) && !Self.sentenceStarters.contains(t) && !Self.verbLike.contains(t)
            && !Self.notHeads.contains(t)
    }

    func isPersonNoun(_ token: Token) -> Bool { has(token, personBits) }

    func isName(_ doc: Document, at i: Int) -> Bool {
        let t = doc.tokens[i]
        guard t.isCapitalized, !t.isAllCaps || t.text.count <= 3, !Self.notNames.contains(t) else { return false }
        if has(t, nameBit) { return true }
        // A capitalised word the model does not know, followed by a verb-like word, reads as a name
        // ("Priya hopes …"): the name list only speeds this up, so pruning rare names costs little.
        // (`range` counts the token's scalars.)
        guard t.kind == .word, t.range.count >= 3, !known(t),
            !Self.sentenceStarters.contains(t), i + 1 < doc.tokens.count
        else { return false }
        let next = doc.tokens[i + 1]
        guard next.isWord, !next.isCapitalized else { return false }
        return known(next) || next.lowerEnds(with: "s") || next.lowerEnds(with: "ed") || Self.verbLike.contains(next)
    }

    /// Capitalised words that open sentences and are never names.
    static let sentenceStarters: WordSet = [
        "the", "this", "that", "these", "those", "there", "then", "when", "after", "before", "while", "once", "today",
        "tomorrow", "yesterday", "tonight", "last", "next", "every", "each", "some", "many", "most", "all", "both",
        "it", "its", "what", "why", "how", "who", "where", "which", "if", "but", "and", "or", "so", "because", "since",
        "although", "though", "still", "yet", "also", "maybe", "perhaps", "please", "thanks", "thank", "sorry", "just",
        "our", "your", "their", "his", "her", "my", "we", "they", "she", "he", "you", "one", "two", "three", "no", "not",
        "nothing", "everything", "something", "anything", "nobody", "everyone", "someone", "anyone", "here", "now",
        "later", "soon", "even", "only", "again", "another", "other", "such", "much", "more", "less", "few", "several",
        "during", "until", "despite", "without", "with", "from", "into", "onto", "over", "under", "about", "around",
        "at", "in", "on", "by", "for", "of", "to", "as", "like", "than", "too", "very", "really", "well", "oh", "hey",
        "hi", "hello", "dear", "meanwhile", "suddenly", "finally", "eventually", "instead", "however", "therefore",
        "thus", "hence", "besides", "otherwise", "first", "second", "third", "lots", "half", "none", "either", "neither",
    ]

    private func isSurname(_ doc: Document, _ i: Int) -> Bool {
        let t = doc.tokens[i]
        return t.isCapitalized && !known(t) && doc.sentences.first { $0.contains(i) }?.lowerBound != i
    }

    /// Every agent mention in the document, left to right, without overlaps.
    func agents(in doc: Document) -> [Agent] {
        var result: [Agent] = []
        var i = 0
        let count = doc.tokens.count
        while i < count {
            // Only a closed-class word, a capitalised word or a person noun can start an agent:
            // the test reads the token in place (no copy of its Strings) and skips most words.
            let candidate = doc.tokens.withUnsafeBufferPointer { tokens in
                tokens[i].isWord && (tokens[i].isCapitalized || doc.closed[i].contains(.agentOpener) || has(tokens[i], personBits))
            }
            if candidate, let a = agent(in: doc, at: i) {
                result.append(a)
                i = a.range.upperBound
            } else {
                i += 1
            }
        }
        return result
    }

    /// The mention covering each token of a document, if any. A token's entry is the mention's
    /// number, not a copy of the mention with its name: the table is built for every document.
    struct MentionIndex {
        let mentions: [Agent]
        private let at: [Int32]

        init(_ mentions: [Agent], tokens: Int) {
            self.mentions = mentions
            var at = [Int32](repeating: -1, count: tokens)
            for (n, a) in mentions.enumerated() { for k in a.range { at[k] = Int32(n) } }
            self.at = at
        }

        subscript(token: Int) -> Agent? { at[token] < 0 ? nil : mentions[Int(at[token])] }

        /// Whether a mention covers `token`.
        func covers(_ token: Int) -> Bool { at[token] >= 0 }
    }

    /// Quantifiers that open a noun phrase as a determiner does ("most drivers", "half the office").
    static let quantifiers: WordSet = ["most", "some", "many", "all", "both", "several", "every", "each", "few", "half", "no"]
    /// Quantifiers that stand before a determiner ("half the office", "all my friends").
    static let ofWhole: WordSet = ["half", "all", "both"]

    /// A person the name, pronoun and kin/role lists do not know, as the subject before `j`: a common noun with its determiner and at most two
    /// modifiers ("the cat", "the old shepherd", "our little boy", "most drivers", "next door's
    /// builders"), or two capitalised words opening the sentence ("Security staff"). A head written
    /// with "'s" ("the dog's been …", "Ben's itching …") is the noun with "is"/"has": `contracted`.
    /// `notModifiers`: words that end the walk back to the determiner (the caller's auxiliaries and
    /// adverbs, "is", "really", …).
    func nounPhrase(_ doc: Document, endingAt j: Int, in sentence: Range<Int>, notModifiers: WordSet) -> (Agent, contracted: Bool)? {
        let head = doc.tokens[j]
        guard head.isWord else { return nil }
        let contracted: Bool
        let headWord: String
        if head.isAlphabetic {
            // The common case, probed by the token's key: no String is built.
            guard !Self.notHeads.contains(head), !Self.sentenceStarters.contains(head) else { return nil }
            contracted = false
            headWord = head.lower
        } else {
            guard head.lower.hasSuffix("'s"), head.lower.count > 3 else { return nil }
            headWord = String(head.lower.dropLast(2))
            guard headWord.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic }), !Self.notHeads.contains(headWord),
                !Self.sentenceStarters.contains(headWord)
            else { return nil }
            contracted = true
        }
        // A name the detector missed, contracted: "Ben's itching to…".
        if contracted, head.isCapitalized {
            return (Agent(range: j..<(j + 1), name: headWord, isSelf: false, isSubject: true), true)
        }
        var k = j - 1
        var modifiers = 0
        while k >= sentence.lowerBound, modifiers <= 2 {
            let t = doc.tokens[k]
            guard t.isWord else { return nil }
            let closed = doc.closed[k].contains(.agentOpener) ? Self.closed[t] : nil
            if closed?.determiner == true || closed?.quantifier == true || t.lowerEnds(with: "'s") {
                var start = k
                // "half the office"; "next door's builders", "the landlord's daughter"
                if k > sentence.lowerBound {
                    let before = doc.tokens[k - 1]
                    if t.isAlphabetic
                        ? Self.determiners.contains(t) && Self.ofWhole.contains(before) : before.lower == "next" || Self.determiners.contains(before)
                    {
                        start -= 1
                    }
                }
                let words = (start...j).map { doc.tokens[$0].lower }
                let name = (words[0] == "a" || words[0] == "an" ? words.dropFirst() : words[...]).joined(separator: " ")
                return (Agent(range: start..<(j + 1), name: contracted ? String(name.dropLast(2)) : name, isSelf: false, isSubject: true), contracted)
            }
            guard t.isAlphabetic, !Self.sentenceStarters.contains(t), !notModifiers.contains(t) else { return nil }
            modifiers += 1
            k -= 1
        }
        // "Security staff spotted…": capitalised opening words.
        if k < sentence.lowerBound, modifiers >= 1, modifiers <= 2, doc.tokens[sentence.lowerBound].isCapitalized {
            let name = (sentence.lowerBound...j).map { doc.tokens[$0].lower }.joined(separator: " ")
            return (Agent(range: sentence.lowerBound..<(j + 1), name: name, isSelf: false, isSubject: true), contracted)
        }
        return nil
    }

    /// Words that never head a holder's noun phrase.
    static let notHeads: WordSet = [
        "it", "this", "that", "there", "here", "what", "which", "who", "whom", "whose", "thing", "things", "idea", "way",
        "time", "day", "night", "morning", "evening", "week", "year", "and", "or", "but", "if", "when", "while", "because",
    ]
}
