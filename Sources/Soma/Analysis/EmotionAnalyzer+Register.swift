/// The text's register as the emotion rules read it: notice headings, instructions, titles,
/// shouting and lone praise (docs/ACCURACY.md, "Emotion and theory-of-mind rules"). Each tells where
/// a text's words name things or perform rather than say how the writer feels.
extension EmotionAnalyzer {
    /// All-caps words of the sentence that no feeling pattern covers (`isShout`).
    func shouts(_ doc: Document, _ sentence: Range<Int>, _ matches: [PatternMatcher.Match]) -> Int {
        doc.tokens.withUnsafeBufferPointer { t in
            var n = 0
            for i in sentence where t[i].isAllCaps && Self.isShout(t[i]) {
                if !matches.contains(where: { feeling[$0.pattern] && $0.range.contains(i) }) { n += 1 }
            }
            return n
        }
    }

    /// The end of a heading that opens the sentence: at most three words, capitalised first, then
    /// a colon ("Warning:", "Lost property:"); the sentence's start when there is none.
    static func headingEnd(_ doc: Document, _ sentence: Range<Int>) -> Int {
        doc.tokens.withUnsafeBufferPointer { t in
            guard let first = sentence.first, t[first].isCapitalized else { return sentence.lowerBound }
            for i in sentence.prefix(4).dropFirst() {
                if t[i].key == colonKey, t[i].lower == ":" { return i + 1 }
                if t[i].kind != .word { break }
            }
            return sentence.lowerBound
        }
    }

    /// Words that may stand before an instruction's verb at the start of its sentence.
    static let instructionOpeners: WordSet = [
        "please", "then", "first", "finally", "now", "and", "just", "simply", "next", "also", "always", "never", "do", "don't", "pls", "plz", "kindly",
    ]
    /// Words that open a clause before the instruction proper: "If you smell gas, open the windows".
    static let leadingClause: WordSet = ["if", "when", "to", "before", "after", "once", "for", "while", "in", "on", "during", "until", "should"]

    /// Whether the instruction verb at `i` opens its sentence (after "please", "then", …) or the main
    /// clause after a leading "if/when/to …" clause and its comma.
    static func opensInstruction(_ doc: Document, _ sentence: Range<Int>, at i: Int) -> Bool {
        var k = i - 1
        while k >= sentence.lowerBound, instructionOpeners.contains(doc.tokens[k]) || doc.tokens[k].lower == "not" { k -= 1 }
        if k < sentence.lowerBound { return true }
        guard doc.tokens[k].lower == ",", leadingClause.contains(doc.tokens[sentence.lowerBound]) else { return false }
        // The comma must close the leading clause: no earlier comma.
        return !(sentence.lowerBound..<k).contains { doc.tokens[$0].lower == "," }
    }

    /// Positions of words inside a title: a run of two or more capitalised words (with "of", "and",
    /// "the", … between them), such as a work's, an event's or a venue's name ("Festival of Joy",
    /// "Anxiety Management Workshop", "The Wretched Mile"). Their words name, they do not feel.
    static func titleWords(_ doc: Document, _ sentence: Range<Int>) -> Set<Int> {
        var result = Set<Int>()
        var run: [Int] = []
        var capitals = 0
        func close() {
            while let last = run.last, !doc.tokens[last].isCapitalized { run.removeLast() }
            if capitals >= 2 { result.formUnion(run) }
            run.removeAll(keepingCapacity: true)
            capitals = 0
        }
        for i in sentence {
            let t = doc.tokens[i]
            if t.isWord, t.isCapitalized, !t.isAllCaps || t.lower.count == 1, t.lower != "i" {
                run.append(i)
                capitals += 1
            } else if !run.isEmpty, t.isWord, titleJoiners.contains(t) {
                run.append(i)
            } else if !run.isEmpty {
                close()
            }
        }
        close()
        return result
    }

    static let titleJoiners: WordSet = ["of", "and", "the", "in", "on", "at", "for", "a", "an", "to", "&"]

    /// A sentence of one word and a full stop ("Brilliant.", "Oh, wonderful.").
    static func isLonePraise(_ doc: Document, _ sentence: Range<Int>) -> Bool {
        doc.tokens.withUnsafeBufferPointer { t in
            // At most three words ("Oh, how lovely."), one of them not an interjection, and a full stop.
            var words = 0
            for i in sentence where t[i].kind == .word {
                words += 1
                if words > 3 { return false }
            }
            guard words >= 1, let last = sentence.last, t[last].lower == "." else { return false }
            return sentence.count { t[$0].kind == .word && !interjections.contains(t[$0]) } == 1
        }
    }

    static let interjections: WordSet = ["oh", "ah", "well", "just", "how", "so", "really", "yeah", "yes"]

    static let bangKey = WordKey.of("!")
    static let questionKey = WordKey.of("?")
    static let commaKey = WordKey.of(",")
    static let colonKey = WordKey.of(":")

    /// Raw valence (VADER's scale) below which a text in a notice's register is neutral: about one
    /// strong feeling word's worth (0.7 once normalised). Chosen on the dev sets: a band of 0.3 to
    /// 0.7 normalised gained 10 to 13 informational texts there and lost one or two others.
    static let noticeValence: Float = 3.8

    /// No first-person writer (no "I" or "we" in any form) and no question: the text informs or
    /// instructs rather than says how its writer feels.
    static func isImpersonal(_ doc: Document) -> Bool {
        doc.tokens.withUnsafeBufferPointer { t in
            for i in t.indices {
                if t[i].key == questionKey, t[i].lower == "?" { return false }
                if doc.closed[i].contains(.pronoun), let p = AgentDetector.pronouns[t[i]], p.name == "i" || p.name == "we" {
                    return false
                }
            }
            return true
        }
    }

    /// A clock time written as one token: "09:15", "10.30", "10pm", "7.30am" (the model's `schedule`
    /// patterns cover "10 am" and the other marks).
    static func hasClockTime(_ doc: Document) -> Bool {
        func isDigit(_ b: UInt8) -> Bool { b >= 48 && b <= 57 }
        // Fields are read in place: a `Token` bound by value is two Strings retained and released.
        return doc.tokens.withUnsafeBufferPointer { t in
            for i in t.indices where t[i].kind == .number || t[i].kind == .word && !t[i].isAlphabetic {
                guard t[i].isASCII, let first = t[i].lower.utf8.first, isDigit(first) else { continue }
                let bytes = t[i].lower.utf8
                if t[i].kind == .word {
                    // Digits (with "." or ":") and then "am" or "pm".
                    if t[i].lowerEnds(with: "am") || t[i].lowerEnds(with: "pm"),
                        bytes.dropLast(2).allSatisfy({ isDigit($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: ":") })
                    {
                        return true
                    }
                    continue
                }
                // "hh:mm" or "hh.mm".
                if let sep = bytes.firstIndex(where: { $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }),
                    bytes.distance(from: bytes.startIndex, to: sep) <= 2, bytes.distance(from: sep, to: bytes.endIndex) == 3
                {
                    return true
                }
            }
            return false
        }
    }

    /// An all-caps word of three or more letters with a vowel, in mixed-case text, that no lexicon
    /// entry covers: "AGAIN", "SIX", "MONDAY" (not "NHS" or "BBC").
    static func isShout(_ t: Token) -> Bool {
        guard t.isAllCaps, t.isASCII, t.isAlphabetic else { return false }
        let bytes = t.lower.utf8
        return bytes.count >= 3 && bytes.contains { $0 == 97 || $0 == 101 || $0 == 105 || $0 == 111 || $0 == 117 }
    }
}
