/// A user's portrait over all of their entries: value hierarchy, emotion baseline and narrative
/// summary, as `GET /v1/profile` answers it. `ProfileBuilder` makes one; `json()` writes it.
///
/// Every score is rounded to four decimals, like the analysis results, so equal inputs give equal
/// bytes.
public struct UserProfile: Sendable, Equatable {
    /// One of Schwartz's ten values as the profile ranks it.
    public struct RankedValue: Sendable, Equatable {
        /// The value's name (`SchwartzValue.rawValue`).
        public var value: String
        /// Recency-weighted and repetition-adjusted score in [0, 1] (see `ProfileBuilder`).
        public var score: Double
        /// Number of entries in which the value scored above zero.
        public var entries: Int

        public init(value: String, score: Double, entries: Int) {
            self.value = value
            self.score = score
            self.entries = entries
        }
    }

    /// The value hierarchy and Schwartz's four higher-order dimensions.
    public struct Values: Sendable, Equatable {
        /// All ten values, highest score first, ties by name.
        public var hierarchy: [RankedValue]
        /// openness_to_change, self_enhancement, conservation and self_transcendence.
        public var dimensions: [String: Double]

        public init(hierarchy: [RankedValue], dimensions: [String: Double]) {
            self.hierarchy = hierarchy
            self.dimensions = dimensions
        }
    }

    /// How the user usually feels: recency-weighted means over their entries.
    public struct EmotionBaseline: Sendable, Equatable {
        /// Mean valence in [-1, 1].
        public var valence: Double
        /// Mean arousal in [0, 1].
        public var arousal: Double
        /// Plutchik's eight emotions, each a mean in [0, 1]; always all eight keys.
        public var emotions: [String: Double]
        /// The strongest emotion of `emotions`, or `neutral` when all are about zero.
        public var dominant: String
        /// How many entries had each dominant emotion (including `neutral`).
        public var dominantCounts: [String: Int]

        public init(valence: Double, arousal: Double, emotions: [String: Double], dominant: String, dominantCounts: [String: Int]) {
            self.valence = valence
            self.arousal = arousal
            self.emotions = emotions
            self.dominant = dominant
            self.dominantCounts = dominantCounts
        }
    }

    /// A character of the user's stories and the number of entries naming them.
    public struct Character: Sendable, Equatable {
        public var name: String
        public var entries: Int

        public init(name: String, entries: Int) {
            self.name = name
            self.entries = entries
        }
    }

    /// What the user's stories look like.
    public struct Narrative: Sendable, Equatable {
        /// The characters named in most entries (at most `ProfileBuilder.Configuration.maxCharacters`),
        /// most entries first, ties by name.
        public var characters: [Character]
        /// Events over all entries.
        public var events: Int
        /// Entries per perspective (first_person, third_person, mixed).
        public var perspective: [String: Int]
        /// Entries per tense (past, present, future, mixed).
        public var tense: [String: Int]

        public init(characters: [Character], events: Int, perspective: [String: Int], tense: [String: Int]) {
            self.characters = characters
            self.events = events
            self.perspective = perspective
            self.tense = tense
        }
    }

    /// Number of entries the profile was built from.
    public var entries: Int
    public var values: Values
    public var emotionBaseline: EmotionBaseline
    public var narrative: Narrative

    public init(entries: Int, values: Values, emotionBaseline: EmotionBaseline, narrative: Narrative) {
        self.entries = entries
        self.values = values
        self.emotionBaseline = emotionBaseline
        self.narrative = narrative
    }

    /// The profile of a user without entries: every score zero, all ten values and the four
    /// dimensions present, `dominant` neutral.
    public static let empty = UserProfile(
        entries: 0,
        values: Values(
            hierarchy: SchwartzValue.allCases.map(\.rawValue).sorted().map { RankedValue(value: $0, score: 0, entries: 0) },
            dimensions: Dictionary(uniqueKeysWithValues: SchwartzDimension.allCases.map { ($0.rawValue, 0.0) })
        ),
        emotionBaseline: EmotionBaseline(
            valence: 0,
            arousal: 0,
            emotions: Dictionary(uniqueKeysWithValues: Emotion.allCases.map { ($0.rawValue, 0.0) }),
            dominant: "neutral",
            dominantCounts: [:]
        ),
        narrative: Narrative(characters: [], events: 0, perspective: [:], tense: [:])
    )

    /// The profile as JSON bytes, keys sorted (the document `JSONEncoder` with `.sortedKeys` would
    /// write for the same shape).
    public func json() -> [UInt8] {
        var w = JSONWriter(capacity: 1024)
        write(to: &w)
        return w.bytes
    }

    /// Writes the profile object into `w`.
    public func write(to w: inout JSONWriter) {
        w.beginObject()
        w.key("emotion_baseline"); w.beginObject()
        w.key("arousal"); w.number(emotionBaseline.arousal)
        w.key("dominant"); w.string(emotionBaseline.dominant)
        w.key("dominant_counts"); w.sortedCounts(emotionBaseline.dominantCounts)
        w.key("emotions"); w.sortedNumbers(emotionBaseline.emotions)
        w.key("valence"); w.number(emotionBaseline.valence)
        w.endObject()
        w.key("entries"); w.number(entries)
        w.key("narrative"); w.beginObject()
        w.key("characters"); w.beginArray()
        for c in narrative.characters {
            w.beginObject()
            w.key("entries"); w.number(c.entries)
            w.key("name"); w.string(c.name)
            w.endObject()
        }
        w.endArray()
        w.key("events"); w.number(narrative.events)
        w.key("perspective"); w.sortedCounts(narrative.perspective)
        w.key("tense"); w.sortedCounts(narrative.tense)
        w.endObject()
        w.key("values"); w.beginObject()
        w.key("dimensions"); w.sortedNumbers(values.dimensions)
        w.key("hierarchy"); w.beginArray()
        for v in values.hierarchy {
            w.beginObject()
            w.key("entries"); w.number(v.entries)
            w.key("score"); w.number(v.score)
            w.key("value"); w.string(v.value)
            w.endObject()
        }
        w.endArray()
        w.endObject()
        w.endObject()
    }
}

/// Schwartz's four higher-order dimensions, grouping the ten values as `ValuesAnalyzer` does.
public enum SchwartzDimension: String, CaseIterable, Sendable {
    case opennessToChange = "openness_to_change"
    case selfEnhancement = "self_enhancement"
    case conservation
    case selfTranscendence = "self_transcendence"

    /// The member values and the share of each counted here: hedonism sits between openness to
    /// change and self-enhancement and counts half in each.
    public var members: [(value: SchwartzValue, weight: Double)] {
        switch self {
        case .opennessToChange: [(.selfDirection, 1), (.stimulation, 1), (.hedonism, 0.5)]
        case .selfEnhancement: [(.achievement, 1), (.power, 1), (.hedonism, 0.5)]
        case .conservation: [(.security, 1), (.conformity, 1), (.tradition, 1)]
        case .selfTranscendence: [(.benevolence, 1), (.universalism, 1)]
        }
    }
}

extension JSONWriter {
    mutating func sortedCounts(_ dict: [String: Int]) {
        beginObject()
        for k in dict.keys.sorted() { key(k); number(dict[k]!) }
        endObject()
    }
}
