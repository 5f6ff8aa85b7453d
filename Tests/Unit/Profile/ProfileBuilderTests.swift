import Foundation
import Soma
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ProfileBuilderTests {
    // MARK: Hand-built results

    /// Analysis results decoded from the JSON the service stores, with only the fields a test cares
    /// about set (the result types have no public initialisers).
    static func results(
        values: [String: Double]? = nil,
        valence: Double? = nil,
        arousal: Double = 0,
        emotions: [String: Double] = [:],
        dominant: String = "neutral",
        tense: String? = nil,
        perspective: String = "first_person",
        characters: [String] = [],
        events: Int = 0
    ) -> AnalysisResults {
        var object: [String: Any] = [:]
        if let values {
            object["values"] = [
                "hierarchy": values.map { ["value": $0.key, "score": $0.value, "evidence": [String]()] },
                "dimensions": [String: Double](),
            ]
        }
        if let valence {
            object["emotion"] = [
                "valence": valence, "arousal": arousal, "emotions": emotions, "dominant": dominant, "sentences": [Any](),
            ]
        }
        if let tense {
            object["narrative"] = [
                "events": (0..<events).map { ["index": $0, "order": $0, "verb": "went", "text": "went", "tense": "past"] },
                "characters": characters,
                "arc": ["staging": [Double](), "plot_progression": [Double](), "cognitive_tension": [Double]()],
                "perspective": perspective,
                "tense": tense,
            ]
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: object)
            return try JSONDecoder().decode(AnalysisResults.self, from: data)
        } catch {
            fatalError("test results do not decode: \(error)")
        }
    }

    static func day(_ n: Int) -> Date { Date(timeIntervalSince1970: 1_700_000_000 + Double(n) * 86_400) }

    static func score(_ profile: UserProfile, _ value: SchwartzValue) -> UserProfile.RankedValue {
        profile.values.hierarchy.first { $0.value == value.rawValue }!
    }

    static func rank(_ profile: UserProfile, _ value: SchwartzValue) -> Int {
        profile.values.hierarchy.firstIndex { $0.value == value.rawValue }!
    }

    static func object(_ bytes: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    // MARK: Empty

    @Test func emptyProfile() throws {
        let profile = ProfileBuilder().build(from: [])
        #expect(profile == .empty)
        #expect(try ProfileBuilder().build(entries: []) == .empty)
        #expect(profile.entries == 0)
        #expect(profile.values.hierarchy.map(\.value) == SchwartzValue.allCases.map(\.rawValue).sorted())
        #expect(profile.values.hierarchy.allSatisfy { $0.score == 0 && $0.entries == 0 })
        #expect(profile.values.dimensions == ["openness_to_change": 0, "self_enhancement": 0, "conservation": 0, "self_transcendence": 0])
        #expect(profile.emotionBaseline.dominant == "neutral")
        #expect(profile.emotionBaseline.emotions.count == 8 && profile.emotionBaseline.emotions.values.allSatisfy { $0 == 0 })
        #expect(profile.narrative == UserProfile.Narrative(characters: [], events: 0, perspective: [:], tense: [:]))

        let json = String(decoding: profile.json(), as: UTF8.self)
        #expect(json.hasPrefix(#"{"emotion_baseline":{"arousal":0,"dominant":"neutral","dominant_counts":{},"emotions":{"anger":0,"#))
        #expect(json.contains(#""entries":0,"narrative":{"characters":[],"events":0,"perspective":{},"tense":{}}"#))
        #expect(
            json.contains(
                #""values":{"dimensions":{"conservation":0,"openness_to_change":0,"self_enhancement":0,"self_transcendence":0},"hierarchy":[{"entries":0,"score":0,"value":"achievement"},"#
            ))
    }

    /// Entries without any of the three modules still count, and leave the baseline empty.
    @Test func entriesWithoutModules() {
        let profile = ProfileBuilder().build(from: [(AnalysisResults(), Self.day(0)), (AnalysisResults(), Self.day(1))])
        #expect(profile.entries == 2)
        #expect(profile.values == UserProfile.empty.values)
        #expect(profile.emotionBaseline == UserProfile.empty.emotionBaseline)
        #expect(profile.narrative == UserProfile.empty.narrative)
    }

    // MARK: Values

    /// Power spikes once (its weighted mean is even a little higher, as the spike is the newest
    /// entry); benevolence is evidenced in every entry and ranks above it.
    @Test func repeatedValueOutranksOneOffSpike() {
        let entries = [
            (Self.results(values: ["power": 0.9, "benevolence": 0.1]), Self.day(3)),
            (Self.results(values: ["benevolence": 0.4, "security": 0.6]), Self.day(2)),
            (Self.results(values: ["benevolence": 0.4, "achievement": 0.6]), Self.day(1)),
        ]
        let builder = ProfileBuilder()
        let profile = builder.build(from: entries)
        let w = [builder.weight(rank: 0), builder.weight(rank: 1), builder.weight(rank: 2)]
        let total = w.reduce(0, +)
        let powerMean = 0.9 * w[0] / total
        let benevolenceMean = (0.1 * w[0] + 0.4 * w[1] + 0.4 * w[2]) / total
        #expect(abs(powerMean - benevolenceMean) < 0.05)

        let power = Self.score(profile, .power)
        let benevolence = Self.score(profile, .benevolence)
        #expect(benevolence.entries == 3 && power.entries == 1)
        #expect(abs(power.score - powerMean * (0.5 + 0.5 / 3)) < 1e-4)
        #expect(abs(benevolence.score - benevolenceMean) < 1e-4)
        #expect(Self.rank(profile, .benevolence) == 0)
        #expect(Self.rank(profile, .benevolence) < Self.rank(profile, .power))
        // Values never evidenced score 0 and sit at the end by name.
        #expect(profile.values.hierarchy.suffix(6).map(\.value) == ["conformity", "hedonism", "self_direction", "stimulation", "tradition", "universalism"])
        #expect(profile.values.hierarchy.suffix(6).allSatisfy { $0.score == 0 && $0.entries == 0 })
    }

    @Test func hierarchyIsSortedByScoreThenName() {
        let profile = ProfileBuilder().build(from: [
            (Self.results(values: ["tradition": 0.25, "achievement": 0.25, "power": 0.5]), Self.day(0))
        ])
        #expect(profile.values.hierarchy.prefix(3).map(\.value) == ["power", "achievement", "tradition"])
        #expect(
            zip(profile.values.hierarchy, profile.values.hierarchy.dropFirst()).allSatisfy { a, b in
                a.score > b.score || (a.score == b.score && a.value < b.value)
            })
    }

    /// Dimensions group the profile scores as `ValuesAnalyzer` groups an entry's shares, hedonism
    /// half in openness to change and half in self-enhancement.
    @Test func dimensionsGroupValuesWithHedonismSplit() {
        let profile = ProfileBuilder().build(from: [
            (Self.results(values: ["hedonism": 0.4, "self_direction": 0.2, "power": 0.1, "security": 0.2, "universalism": 0.1]), Self.day(0))
        ])
        #expect(
            profile.values.dimensions == [
                "openness_to_change": 0.4,
                "self_enhancement": 0.3,
                "conservation": 0.2,
                "self_transcendence": 0.1,
            ])
    }

    /// One real entry: the profile's value scores and dimensions are the entry's own.
    @Test func singleEntryMatchesItsAnalysis() throws {
        let results = Fixtures.engine.analyze(
            "I volunteer at the shelter because helping others and protecting nature matter to me. I also want to win the race and earn a promotion.")
        let values = try #require(results.values)
        let profile = ProfileBuilder().build(from: [(results, Self.day(0))])
        for entry in values.hierarchy {
            let ranked = try #require(profile.values.hierarchy.first { $0.value == entry.value })
            #expect(ranked.score == entry.score)
            #expect(ranked.entries == (entry.score > 0 ? 1 : 0))
        }
        #expect(values.hierarchy.contains { $0.score > 0 })
        for (name, score) in values.dimensions {
            #expect(abs(try #require(profile.values.dimensions[name]) - score) < 3e-4, "\(name)")
        }
        #expect(Set(profile.values.dimensions.keys) == Set(values.dimensions.keys))
    }

    // MARK: Emotion baseline

    /// The same two entries with their dates swapped move the baseline toward the newer one.
    @Test func recencyWeightsTheNewerEntryMore() {
        let happy = Self.results(valence: 0.8, arousal: 0.6, emotions: ["joy": 0.6], dominant: "joy")
        let sad = Self.results(valence: -0.8, arousal: 0.2, emotions: ["sadness": 0.5], dominant: "sadness")
        let builder = ProfileBuilder(halfLife: 1)
        let happyNewer = builder.build(from: [(sad, Self.day(0)), (happy, Self.day(1))])
        let sadNewer = builder.build(from: [(happy, Self.day(0)), (sad, Self.day(1))])
        #expect(happyNewer.emotionBaseline.valence > 0)
        #expect(sadNewer.emotionBaseline.valence < 0)
        // Weights 1 and 0.5: (0.8 − 0.4) / 1.5.
        #expect(happyNewer.emotionBaseline.valence == 0.2667)
        #expect(sadNewer.emotionBaseline.valence == -0.2667)
        #expect(happyNewer.emotionBaseline.arousal == 0.4667)
        #expect(happyNewer.emotionBaseline.dominant == "joy")
        #expect(sadNewer.emotionBaseline.dominant == "sadness")
        #expect(happyNewer.emotionBaseline.dominantCounts == ["joy": 1, "sadness": 1])

        // With the default half-life the newer entry still weighs more, only less so.
        let gentle = ProfileBuilder().build(from: [(sad, Self.day(0)), (happy, Self.day(1))]).emotionBaseline.valence
        #expect(gentle > 0 && gentle < happyNewer.emotionBaseline.valence)

        // Entries written at the same instant weigh the same, whatever the input order.
        let tiedA = builder.build(from: [(sad, Self.day(0)), (happy, Self.day(0))])
        let tiedB = builder.build(from: [(happy, Self.day(0)), (sad, Self.day(0))])
        #expect(tiedA.emotionBaseline.valence == 0)
        #expect(tiedA.json() == tiedB.json())
    }

    @Test func weightHalvesEveryHalfLife() {
        let builder = ProfileBuilder(halfLife: 20)
        #expect(builder.weight(rank: 0) == 1)
        #expect(abs(builder.weight(rank: 20) - 0.5) < 1e-12)
        #expect(abs(builder.weight(rank: 40) - 0.25) < 1e-12)
    }

    @Test func dominantIsNeutralWhenEmotionsAreAboutZero() {
        let profile = ProfileBuilder().build(from: [
            (Self.results(valence: 0.1, emotions: ["joy": 0.001]), Self.day(0)),
            (Self.results(valence: 0, emotions: [:]), Self.day(1)),
        ])
        #expect(profile.emotionBaseline.dominant == "neutral")
        #expect(profile.emotionBaseline.dominantCounts == ["neutral": 2])
        #expect(profile.emotionBaseline.emotions.count == 8)
    }

    // MARK: Narrative

    @Test func narrativeCountsEntriesAndCharacters() {
        var entries: [(results: AnalysisResults, createdAt: Date)] = [
            (Self.results(tense: "past", characters: ["anna", "ben", "anna"], events: 3), Self.day(0)),
            (Self.results(tense: "past", perspective: "third_person", characters: ["anna"], events: 2), Self.day(1)),
            (Self.results(tense: "present", characters: ["carl", "ben"], events: 0), Self.day(2)),
        ]
        // Twelve characters named once each: only ten characters are listed.
        for k in 0..<12 {
            entries.append((Self.results(tense: "future", characters: ["z\(k)"], events: 1), Self.day(3 + k)))
        }
        let narrative = ProfileBuilder().build(from: entries).narrative
        #expect(narrative.events == 17)
        #expect(narrative.tense == ["past": 2, "present": 1, "future": 12])
        #expect(narrative.perspective == ["first_person": 14, "third_person": 1])
        #expect(narrative.characters.count == 10)
        #expect(
            narrative.characters.prefix(4) == [
                .init(name: "anna", entries: 2), .init(name: "ben", entries: 2), .init(name: "carl", entries: 1), .init(name: "z0", entries: 1),
            ])
    }

    // MARK: Stored entries

    @Test func undecodableAnalysisIsSkipped() throws {
        let texts = ["I love my family and I always help my neighbours.", "Yesterday I was furious: they lied to me again!"]
        let analysed = texts.map { Fixtures.engine.analyze($0) }
        var entries = analysed.enumerated().map { k, r in
            Entry(id: "e\(k)", userID: "u", text: texts[k], createdAt: Self.day(k), analysis: r.json(), modelVersion: "m")
        }
        entries.append(Entry(id: "bad1", userID: "u", text: "x", createdAt: Self.day(5), analysis: Array("not json".utf8), modelVersion: "m"))
        entries.append(Entry(id: "bad2", userID: "u", text: "x", createdAt: Self.day(6), analysis: Array(#"{"emotion":5}"#.utf8), modelVersion: "m"))
        entries.append(Entry(id: "bad3", userID: "u", text: "x", createdAt: Self.day(7), analysis: [], modelVersion: "m"))

        let profile = try ProfileBuilder().build(entries: entries)
        #expect(profile.entries == 2)
        #expect(profile == ProfileBuilder().build(from: analysed.enumerated().map { ($1, Self.day($0)) }))
        // The skipped entries take no recency rank: the newest decodable entry weighs 1.
        let alone = try ProfileBuilder(halfLife: 1).build(entries: [entries[1], entries[2]])
        #expect(alone.emotionBaseline.valence == analysed[1].emotion!.valence)
    }

    // MARK: JSON

    static let corpus = [
        "I volunteer at the shelter every weekend because helping others matters to me.",
        "My boss promised me a promotion, but she gave it to Mark. I was furious and I said nothing.",
        "Tomorrow we will fly to Lisbon with Anna. I can't wait to see the ocean!",
        "I had never felt so alone. After the funeral, my brother and I walked home in silence.",
        "Tradition matters in our family: every Sunday we eat together and my grandmother prays.",
    ]

    static func corpusEntries() -> [(results: AnalysisResults, createdAt: Date)] {
        corpus.enumerated().map { k, text in (Fixtures.engine.analyze(text), Self.day(k)) }
    }

    @Test func jsonShape() throws {
        let profile = ProfileBuilder().build(from: Self.corpusEntries())
        let bytes = profile.json()
        let root = try Self.object(bytes)
        #expect(Set(root.keys) == ["emotion_baseline", "entries", "narrative", "values"])
        #expect(root["entries"] as? Int == 5)

        let baseline = try #require(root["emotion_baseline"] as? [String: Any])
        #expect(Set(baseline.keys) == ["arousal", "dominant", "dominant_counts", "emotions", "valence"])
        #expect(baseline["arousal"] as? Double != nil)
        #expect(baseline["valence"] as? Double != nil)
        #expect(baseline["dominant"] as? String == profile.emotionBaseline.dominant)
        let counts = try #require(baseline["dominant_counts"] as? [String: Int])
        #expect(counts.values.reduce(0, +) == 5)
        let emotions = try #require(baseline["emotions"] as? [String: Double])
        #expect(Set(emotions.keys) == Set(Emotion.allCases.map(\.rawValue)))

        let narrative = try #require(root["narrative"] as? [String: Any])
        #expect(Set(narrative.keys) == ["characters", "events", "perspective", "tense"])
        let characters = try #require(narrative["characters"] as? [[String: Any]])
        #expect(!characters.isEmpty && characters.count <= 10)
        for c in characters {
            #expect(Set(c.keys) == ["entries", "name"])
            #expect(c["entries"] as? Int != nil && c["name"] as? String != nil)
        }
        #expect(narrative["events"] as? Int == profile.narrative.events)
        #expect(try #require(narrative["perspective"] as? [String: Int]).values.reduce(0, +) == 5)
        #expect(try #require(narrative["tense"] as? [String: Int]).values.reduce(0, +) == 5)

        let values = try #require(root["values"] as? [String: Any])
        #expect(Set(values.keys) == ["dimensions", "hierarchy"])
        let dimensions = try #require(values["dimensions"] as? [String: Double])
        #expect(Set(dimensions.keys) == ["conservation", "openness_to_change", "self_enhancement", "self_transcendence"])
        let hierarchy = try #require(values["hierarchy"] as? [[String: Any]])
        #expect(hierarchy.count == 10)
        #expect(Set(hierarchy.compactMap { $0["value"] as? String }) == Set(SchwartzValue.allCases.map(\.rawValue)))
        for v in hierarchy {
            #expect(Set(v.keys) == ["entries", "score", "value"])
            #expect(v["entries"] as? Int != nil && v["score"] as? Double != nil)
        }
        let scores = hierarchy.compactMap { $0["score"] as? Double }
        #expect(scores == scores.sorted(by: >))

        // Keys are written sorted, as JSONEncoder's `.sortedKeys` would.
        let text = String(decoding: bytes, as: UTF8.self)
        let positions = ["\"emotion_baseline\"", "\"entries\":5", "\"narrative\"", "\"values\""].map { text.range(of: $0)!.lowerBound }
        #expect(positions == positions.sorted())
    }

    @Test func deterministicBytes() throws {
        let entries = Self.corpusEntries()
        let builder = ProfileBuilder()
        let first = builder.build(from: entries).json()
        #expect(builder.build(from: entries).json() == first)
        #expect(builder.build(from: Array(entries.reversed())).json() == first)
        let stored = entries.enumerated().map { k, e in
            Entry(id: "e\(k)", userID: "u", text: Self.corpus[k], createdAt: e.createdAt, analysis: e.results.json(), modelVersion: "m")
        }
        #expect(try builder.build(entries: stored).json() == first)
        #expect(try builder.build(entries: stored.shuffled()).json() == first)
    }
}
