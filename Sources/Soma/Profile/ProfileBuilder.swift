public import Foundation

/// Builds a `UserProfile` from a user's analysed entries.
///
/// Recency: entries are ranked newest first and the entry of rank `r` weighs
/// `w(r) = 0.5^(r / halfLife)`, so the newest weighs 1 and one written `halfLife` entries earlier
/// weighs 0.5. Entries with the same `createdAt` share the rank of the first of them, so the result
/// does not depend on the order the entries are given in.
///
/// Values: over the `N` entries that carry a values result, each value `v` with per-entry score
/// `s(i, v)` (its share of the entry's value evidence) and `n(v)` entries where `s(i, v) > 0` scores
///
///     score(v) = (Σ w(i) · s(i, v) / Σ w(i)) × (0.5 + 0.5 · n(v) / N)
///
/// The first factor is the recency-weighted mean; the second rewards repetition, so a value
/// evidenced in most entries outranks one that spikes in a single entry with the same mean. For a
/// single entry the profile scores equal the entry's own scores. The four dimensions group the
/// profile scores as `ValuesAnalyzer` groups an entry's shares (`SchwartzDimension`): the sum of
/// the member values' scores, hedonism counted half in openness to change and half in
/// self-enhancement.
///
/// Emotion baseline: recency-weighted means of valence, arousal and each of the eight emotions over
/// the entries that carry an emotion result; `dominant` is the strongest mean emotion (ties in
/// Plutchik's order), or `neutral` when none reaches `neutralThreshold`.
///
/// Narrative: entries per tense and per perspective, events summed over entries, and each character
/// counted once per entry that names it.
public struct ProfileBuilder: Sendable {
    /// Tuning of the builder; every field has a default.
    public struct Configuration: Sendable, Equatable {
        /// Entries after which an entry's weight halves.
        public var halfLife: Int
        /// Number of characters the narrative summary lists.
        public var maxCharacters: Int

        public init(halfLife: Int = 20, maxCharacters: Int = 10) {
            precondition(halfLife >= 1, "halfLife must be at least 1")
            precondition(maxCharacters >= 0, "maxCharacters must not be negative")
            self.halfLife = halfLife
            self.maxCharacters = maxCharacters
        }
    }

    /// A baseline emotion below this mean is treated as absent when naming the dominant one.
    public static let neutralThreshold = 0.01

    public let configuration: Configuration

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
    }

    /// A builder with the recency half-life `halfLife` (in entries) and default other settings.
    public init(halfLife: Int) {
        self.init(configuration: Configuration(halfLife: halfLife))
    }

    /// The recency weight of the entry with `rank` newer entries before it.
    public func weight(rank: Int) -> Double {
        pow(0.5, Double(rank) / Double(configuration.halfLife))
    }

    /// The profile of stored entries. Each entry's `analysis` is decoded as `AnalysisResults`; an
    /// entry whose analysis does not decode is skipped and not counted in `entries`.
    ///
    /// Never throws today (a bad entry is skipped, not fatal); `throws` keeps callers ready for
    /// stricter decoding.
    public func build(entries: [Entry]) throws -> UserProfile {
        let decoder = JSONDecoder()
        // Newest first, then by id as stores order them, so equal dates give the same bytes whatever
        // the input order.
        let ordered = entries.sorted { a, b in a.createdAt != b.createdAt ? a.createdAt > b.createdAt : a.id > b.id }
        var decoded: [(results: AnalysisResults, createdAt: Date)] = []
        decoded.reserveCapacity(ordered.count)
        for entry in ordered {
            guard let results = try? decoder.decode(AnalysisResults.self, from: Data(entry.analysis)) else { continue }
            decoded.append((results, entry.createdAt))
        }
        return build(from: decoded)
    }

    /// The profile of analysed entries, given in any order.
    public func build(from entries: [(results: AnalysisResults, createdAt: Date)]) -> UserProfile {
        guard !entries.isEmpty else { return .empty }
        let order = entries.indices.sorted { a, b in
            entries[a].createdAt != entries[b].createdAt ? entries[a].createdAt > entries[b].createdAt : a < b
        }
        var values = ValueAccumulator()
        var emotion = EmotionAccumulator()
        var narrative = NarrativeAccumulator()
        var rank = 0
        for (position, index) in order.enumerated() {
            if position > 0, entries[index].createdAt != entries[order[position - 1]].createdAt { rank = position }
            let w = weight(rank: rank)
            let results = entries[index].results
            if let v = results.values { values.add(v, weight: w) }
            if let e = results.emotion { emotion.add(e, weight: w) }
            if let n = results.narrative { narrative.add(n) }
        }
        return UserProfile(
            entries: entries.count,
            values: values.result(),
            emotionBaseline: emotion.result(),
            narrative: narrative.result(maxCharacters: configuration.maxCharacters)
        )
    }
}

/// Rounds a profile score for output (4 decimals, as the analysis results are rounded).
private func round4(_ x: Double) -> Double {
    (x * 10_000).rounded() / 10_000
}

private struct ValueAccumulator {
    static let index: [String: Int] = Dictionary(uniqueKeysWithValues: SchwartzValue.allCases.enumerated().map { ($1.rawValue, $0) })

    var totalWeight = 0.0
    var count = 0
    var weighted = [Double](repeating: 0, count: SchwartzValue.allCases.count)
    var present = [Int](repeating: 0, count: SchwartzValue.allCases.count)

    mutating func add(_ result: ValuesResult, weight: Double) {
        totalWeight += weight
        count += 1
        for entry in result.hierarchy {
            guard let k = Self.index[entry.value] else { continue }
            weighted[k] += weight * entry.score
            if entry.score > 0 { present[k] += 1 }
        }
    }

    func result() -> UserProfile.Values {
        guard count > 0, totalWeight > 0 else { return UserProfile.empty.values }
        let scores = weighted.indices.map { k in
            weighted[k] / totalWeight * (0.5 + 0.5 * Double(present[k]) / Double(count))
        }
        let hierarchy = SchwartzValue.allCases.enumerated()
            .map { k, v in UserProfile.RankedValue(value: v.rawValue, score: round4(scores[k]), entries: present[k]) }
            .sorted { a, b in a.score != b.score ? a.score > b.score : a.value < b.value }
        var dimensions: [String: Double] = [:]
        for d in SchwartzDimension.allCases {
            dimensions[d.rawValue] = round4(d.members.reduce(0) { $0 + $1.weight * scores[Self.index[$1.value.rawValue]!] })
        }
        return UserProfile.Values(hierarchy: hierarchy, dimensions: dimensions)
    }
}

private struct EmotionAccumulator {
    var totalWeight = 0.0
    var valence = 0.0
    var arousal = 0.0
    var emotions = [Double](repeating: 0, count: Emotion.allCases.count)
    var dominantCounts: [String: Int] = [:]

    mutating func add(_ result: EmotionResult, weight: Double) {
        totalWeight += weight
        valence += weight * result.valence
        arousal += weight * result.arousal
        for (k, e) in Emotion.allCases.enumerated() { emotions[k] += weight * (result.emotions[e.rawValue] ?? 0) }
        dominantCounts[result.dominant, default: 0] += 1
    }

    func result() -> UserProfile.EmotionBaseline {
        guard totalWeight > 0 else { return UserProfile.empty.emotionBaseline }
        let means = emotions.map { $0 / totalWeight }
        var strongest = 0
        for k in means.indices where means[k] > means[strongest] { strongest = k }
        let dominant = means[strongest] >= ProfileBuilder.neutralThreshold ? Emotion.allCases[strongest].rawValue : "neutral"
        var named: [String: Double] = [:]
        for (k, e) in Emotion.allCases.enumerated() { named[e.rawValue] = round4(means[k]) }
        return UserProfile.EmotionBaseline(
            valence: round4(valence / totalWeight),
            arousal: round4(arousal / totalWeight),
            emotions: named,
            dominant: dominant,
            dominantCounts: dominantCounts
        )
    }
}

private struct NarrativeAccumulator {
    var characters: [String: Int] = [:]
    var events = 0
    var perspective: [String: Int] = [:]
    var tense: [String: Int] = [:]

    mutating func add(_ result: NarrativeResult) {
        events += result.events.count
        perspective[result.perspective, default: 0] += 1
        tense[result.tense, default: 0] += 1
        for name in Set(result.characters) where !name.isEmpty { characters[name, default: 0] += 1 }
    }

    func result(maxCharacters: Int) -> UserProfile.Narrative {
        let top =
            characters
            .map { UserProfile.Character(name: $0.key, entries: $0.value) }
            .sorted { a, b in a.entries != b.entries ? a.entries > b.entries : a.name < b.name }
            .prefix(maxCharacters)
        return UserProfile.Narrative(characters: Array(top), events: events, perspective: perspective, tense: tense)
    }
}
