/// The evaluation tasks of every module, with their plain keyword baselines.
///
/// A keyword baseline is what a first attempt without rules would do: a dozen obvious words per
/// label, counted, no negation, no contrast, no spans.
extension Evaluator.Task {
    public static let all: [Evaluator.Task] = [
        emotionValence, emotionDominant, reasoningRelations, valuesTop3, theoryOfMindType, theoryOfMindHolder, narrativeTense, narrativePerspective,
        narrativeFirstEvent,
    ]

    /// The tasks of the sets written from the blind set's label guide (Fixtures/eval-blind,
    /// Fixtures/eval-dev, Fixtures/eval-val), whose `first_event` is the first event in *text*
    /// order; the old set's (Fixtures/eval) is the first in story time.
    public static let labelGuide: [Evaluator.Task] = all.map { $0.name == narrativeFirstEvent.name ? narrativeFirstEventInText : $0 }

    static func words(_ text: String) -> [String] {
        Tokenizer().tokenize(TextNormalizer.normalize(text)).filter(\.isWord).map(\.lower)
    }

    static func keywordVote(_ text: String, _ table: [(String, Set<String>)], fallback: String?) -> [String] {
        let ws = words(text)
        var best: [(String, Int)] = []
        for (label, keys) in table {
            let c = ws.filter { keys.contains($0) }.count
            if c > 0 { best.append((label, c)) }
        }
        best.sort { $0.1 > $1.1 }
        if best.isEmpty { return fallback.map { [$0] } ?? [] }
        return best.map(\.0)
    }

    public static let emotionValence = Evaluator.Task(
        module: .emotion, name: "emotion valence sign",
        gold: { $0.label("valence") },
        predict: { r in
            let v = r.emotion?.valence ?? 0
            return [v >= 0.05 ? "positive" : (v <= -0.05 ? "negative" : "neutral")]
        },
        keyword: { text in
            let ws = words(text)
            let pos: Set<String> = ["good", "great", "happy", "love", "glad", "nice", "excited", "wonderful", "best", "proud", "amazing", "thank"]
            let neg: Set<String> = ["bad", "sad", "angry", "hate", "terrible", "awful", "worst", "upset", "afraid", "scared", "worried", "disgusting"]
            let p = ws.filter { pos.contains($0) }.count
            let n = ws.filter { neg.contains($0) }.count
            return [p > n ? "positive" : (n > p ? "negative" : "neutral")]
        },
        lexicon: { m in
            // The lexicon's valences summed and squashed as the engine does, the same thresholds.
            let v = EmotionAnalyzer.normalize(m.sum("valence", label: "lex"))
            return [v >= 0.05 ? "positive" : (v <= -0.05 ? "negative" : "neutral")]
        }
    )

    public static let emotionDominant = Evaluator.Task(
        module: .emotion, name: "emotion dominant",
        gold: { $0.label("dominant") },
        predict: { [$0.emotion?.dominant ?? "neutral"] },
        keyword: { text in
            keywordVote(
                text,
                [
                    ("joy", ["happy", "joy", "glad", "delighted", "love"]),
                    ("trust", ["trust", "reliable", "rely", "faith", "honest"]),
                    ("fear", ["afraid", "scared", "fear", "worried", "anxious"]),
                    ("surprise", ["surprised", "shocked", "amazed", "unexpected", "wow"]),
                    ("sadness", ["sad", "cry", "lonely", "miss", "unhappy"]),
                    ("disgust", ["disgusting", "gross", "disgusted", "sick"]),
                    ("anger", ["angry", "furious", "mad", "hate", "annoyed"]),
                    ("anticipation", ["excited", "forward", "wait", "soon", "hope"]),
                ], fallback: "neutral")
        },
        lexicon: { m in
            // The emotion whose weights sum highest; none at all is neutral.
            let sums = Emotion.allCases.map { ($0.rawValue, m.sum($0.rawValue, label: "lex")) }
            guard let best = sums.max(by: { $0.1 < $1.1 }), best.1 > 0 else { return ["neutral"] }
            return [best.0]
        }
    )

    public static let reasoningRelations = Evaluator.Task(
        module: .reasoning, name: "reasoning relations",
        gold: { ($0.labels["relations"] ?? []).sorted().joined(separator: "+") },
        predict: { r in
            let set = Set((r.reasoning?.chains ?? []).map(\.relation))
            return [set.sorted().joined(separator: "+")]
        },
        keyword: { text in
            let ws = Set(words(text))
            var set: Set<String> = []
            if ws.contains("because") { set.insert("causal") }
            if ws.contains("if") { set.insert("conditional") }
            if ws.contains("but") { set.insert("contrastive") }
            if ws.contains("therefore") { set.insert("inferential") }
            if ws.contains("according") { set.insert("evidential") }
            return [set.sorted().joined(separator: "+")]
        },
        lexicon: { m in
            // Every matched marker's relation, no filter for its other readings.
            [Set(m.labels.compactMap { $0.split(separator: ":").first.map(String.init) }).sorted().joined(separator: "+")]
        }
    )

    public static let valuesTop3 = Evaluator.Task(
        module: .values, name: "values label in top 3",
        gold: { $0.label("value") },
        predict: { r in (r.values?.hierarchy ?? []).filter { $0.score > 0 }.prefix(3).map(\.value) },
        keyword: { text in
            Array(
                keywordVote(
                    text,
                    [
                        ("self_direction", ["freedom", "independent", "choose", "own"]),
                        ("stimulation", ["exciting", "adventure", "new", "thrill"]),
                        ("hedonism", ["fun", "pleasure", "enjoy", "relax"]),
                        ("achievement", ["success", "goal", "achieve", "win"]),
                        ("power", ["power", "money", "control", "status"]),
                        ("security", ["safe", "security", "stable", "safety"]),
                        ("conformity", ["rules", "obey", "polite", "proper"]),
                        ("tradition", ["tradition", "faith", "religion", "custom"]),
                        ("benevolence", ["help", "family", "friends", "care"]),
                        ("universalism", ["equality", "environment", "justice", "nature"]),
                    ], fallback: nil
                ).prefix(3))
        },
        lexicon: { m in
            // The three values whose weights sum highest (above zero).
            let values = [
                "self_direction", "stimulation", "hedonism", "achievement", "power", "security", "conformity", "tradition", "benevolence", "universalism",
            ]
            return values.map { ($0, m.sum($0, label: "lex")) }.filter { $0.1 > 0 }.sorted { $0.1 > $1.1 }.prefix(3).map(\.0)
        },
        correct: { gold, predicted in predicted.prefix(3).contains(gold) }
    )

    public static let theoryOfMindType = Evaluator.Task(
        module: .theoryOfMind, name: "theory of mind state type",
        gold: { $0.label("type") },
        predict: { r in [r.theoryOfMind?.agents.first?.states.first?.type ?? "none"] },
        keyword: { text in
            let table: [String: String] = [
                "think": "belief", "want": "desire", "plan": "intention", "feel": "emotion", "know": "knowledge", "see": "perception",
            ]
            for w in words(text) { if let t = table[w] { return [t] } }
            return ["none"]
        },
        lexicon: { m in
            // The state type matched most often (the earliest on a tie); none matched is none.
            let types = ["belief", "desire", "intention", "emotion", "knowledge", "perception"]
            let found = m.labels.filter { types.contains($0) }
            let counts = Dictionary(found.map { ($0, 1) }, uniquingKeysWith: +)
            guard let top = counts.values.max() else { return ["none"] }
            return [found.first { counts[$0] == top }!]
        }
    )

    /// Who holds the first mental state, as the agent detector names it ("i", "my aunt", "the old
    /// shepherd", "half the office"); "none" for a text without one. Exact match.
    public static let theoryOfMindHolder = Evaluator.Task(
        module: .theoryOfMind, name: "theory of mind holder",
        gold: { item in
            let agent = item.label("agent").lowercased()
            return agent.isEmpty ? "none" : agent
        },
        predict: { r in [r.theoryOfMind?.agents.first?.agent ?? "none"] },
        keyword: { text in
            // The first personal pronoun, in its subject form.
            let table: [String: String] = ["i": "i", "me": "i", "my": "i", "he": "he", "she": "she", "we": "we", "they": "they", "you": "you"]
            for w in words(text) { if let a = table[w] { return [a] } }
            return ["none"]
        },
        lexicon: { m in
            // The first word of the agent lists (pronouns, kinship and role nouns, names), as written.
            guard let first = m.matches.first(where: { m.model.patterns[$0.pattern].label.hasPrefix("agent.") }) else { return ["none"] }
            return [m.document.tokens[first.range.lowerBound].lower]
        }
    )

    public static let narrativeTense = Evaluator.Task(
        module: .narrative, name: "narrative tense",
        gold: { $0.label("tense") },
        predict: { [$0.narrative?.tense ?? ""] },
        keyword: { text in
            let ws = words(text)
            if ws.contains("will") { return ["future"] }
            if ws.contains(where: { $0.hasSuffix("ed") }) { return ["past"] }
            return ["present"]
        },
        lexicon: { m in
            // Past, present and future forms counted; the most frequent wins, present on a tie.
            let labels = m.labels
            let past = labels.filter { $0 == "verb.past" || $0 == "aux.past" }.count
            let present = labels.filter { $0 == "verb.3sg" || $0 == "aux.present" }.count
            let future = labels.filter { $0 == "aux.future" }.count
            if future > past && future > present { return ["future"] }
            return [past > present ? "past" : "present"]
        }
    )

    public static let narrativePerspective = Evaluator.Task(
        module: .narrative, name: "narrative perspective",
        gold: { $0.label("perspective") },
        predict: { [$0.narrative?.perspective ?? ""] },
        keyword: { text in [words(text).contains("i") ? "first_person" : "third_person"] },
        lexicon: { m in
            // First-person pronouns outnumbering third-person ones.
            let labels = m.labels
            return [labels.filter { $0 == "pronoun.first" }.count > labels.filter { $0 == "pronoun.third" }.count ? "first_person" : "third_person"]
        }
    )

    /// The label guide's first event: the first in text order, not in story time ("The plane
    /// landed. Shortly after take-off the pilot had noticed a warning light": "landed").
    public static let narrativeFirstEventInText: Evaluator.Task = {
        var task = narrativeFirstEvent
        task.name = "narrative first in text"
        task.predict = { r in [r.narrative?.events.min { $0.index < $1.index }?.verb ?? ""] }
        return task
    }()

    /// The old set's first event: the first in story time.
    public static let narrativeFirstEvent = Evaluator.Task(
        module: .narrative, name: "narrative first event",
        gold: { $0.label("first_event") },
        predict: { r in [r.narrative?.events.first { $0.order == 0 }?.verb ?? ""] },
        keyword: { text in
            // The first word that looks like a verb in the past tense, else the text's second word.
            let ws = words(text)
            return [ws.first { $0.hasSuffix("ed") } ?? (ws.count > 1 ? ws[1] : "")]
        },
        lexicon: { m in
            // The first past-tense verb form of the lexicon.
            guard let first = m.matches.first(where: { m.model.patterns[$0.pattern].label == "verb.past" }) else { return [""] }
            return [m.document.tokens[first.range.lowerBound].lower]
        }
    )
}
