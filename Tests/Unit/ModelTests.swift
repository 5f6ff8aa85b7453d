import Foundation
import Soma
import Testing

struct ModelSourceTests {
    @Test func parsesWordsPhrasesAndTemplates() throws {
        let model = try ModelSource.parse(
            .reasoning,
            text: """
                # comment
                because\tcausal:premise_after\tconfidence=0.9\tprotected
                as a result\tcausal:conclusion_after\tconfidence=0.8\t-
                <AGENT> must have\tinferential:conclusion_self\t-\t-
                """)
        #expect(model.patterns.count == 3)
        #expect(model.patterns.map(\.kind) == [.word, .phrase, .template])
        #expect(model.patterns[0].isProtected)
        #expect(model.weight(0, "confidence") == 0.9)
        #expect(model.weights.row(2) == [0])
    }

    @Test func sameTokensAndClassMerge() throws {
        let model = try ModelSource.parse(.emotion, text: "happy\tlex\tvalence=2.7\t-\nhappy\tlex\tjoy=0.9 arousal=0.6\tprotected\n")
        #expect(model.patterns.count == 1)
        #expect(model.weight(0, "valence") == 2.7)
        #expect(model.weight(0, "joy") == 0.9)
        #expect(model.patterns[0].isProtected)
    }

    @Test(arguments: [
        ("happy\tlex\tvalence=2\n", "expected 4 tab-separated columns"),
        ("happy\tlex\tjoyful=1\t-\n", "unknown weight 'joyful'"),
        ("happy\tlex\tvalence=abc\t-\n", "not a finite number"),
        ("happy\tlex\tvalence\t-\n", "is not name=value"),
        ("\tlex\t-\t-\n", "empty pattern or class"),
    ])
    func malformedLinesAreRefusedWithTheirLine(text: String, message: String) {
        do {
            _ = try ModelSource.parse(.emotion, text: "# ok\n" + text, origin: "test.tsv")
            Issue.record("expected an error")
        } catch let error as ModelSource.LoadError {
            #expect(error.line == 2)
            #expect(error.description.contains(message), "\(error)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func classesBeyondTheMaskAreRefused() throws {
        func lines(_ classes: Int) -> String {
            (0..<classes).map { "word\($0)\tclass\($0)\tconfidence=0.5\t-" }.joined(separator: "\n")
        }
        let full = try ModelSource.parse(.reasoning, text: lines(ModuleModel.maxClasses))
        // The 64th class still has its own bit.
        #expect(full.contains(word: "word63", label: "class63") && !full.contains(word: "word63", label: "class62"))
        #expect(throws: ModelSource.LoadError.self) { try ModelSource.parse(.reasoning, text: lines(ModuleModel.maxClasses + 1)) }
    }

    @Test func checksumFollowsContent() throws {
        let a = try ModelSource.parse(.values, text: "help others\tlex\tbenevolence=1\t-\n")
        let b = try ModelSource.parse(.values, text: "help others\tlex\tbenevolence=0.9\t-\n")
        let c = try ModelSource.parse(.values, text: "help others\tlex\tbenevolence=1\t-\n")
        #expect(a.checksum != b.checksum)
        #expect(a.checksum == c.checksum)
        #expect(a.version.hasPrefix("values-"))
    }
}

struct PatternMatcherTests {
    let pipeline = TextPipeline()

    @Test func longestPhraseWins() throws {
        let model = try ModelSource.parse(
            .reasoning,
            text: """
                because\tcausal:premise_after\t-\t-
                because of\tcausal:premise_after\t-\t-
                because of this\tcausal:conclusion_after\t-\t-
                """)
        let doc = pipeline.process("It rained, and because of this we stayed in.")
        let matches = model.matcher.longestMatches(in: doc, ids: model.matcher.tokenIDs(doc))
        #expect(matches.count == 1)
        #expect(model.patterns[matches[0].pattern].tokens == ["because", "of", "this"])
    }

    @Test func slotsMatchByTokenClass() throws {
        let model = try ModelSource.parse(.narrative, text: "<NUM> years ago\ttemporal\torder=-1\t-\nmade <AGENT> cry\ttemporal\t-\t-\n")
        let doc = pipeline.process("It happened 20 years ago. It made Anna cry.")
        let ids = model.matcher.tokenIDs(doc)
        let found = model.matcher.longestMatches(in: doc, ids: ids, isAgent: { doc.tokens[$0].text == "Anna" })
        #expect(found.map { doc.text(of: $0.range) } == ["20 years ago", "made Anna cry"])
    }
}

struct CommittedModelTests {
    let models = Fixtures.modelSet

    @Test func emotionLexiconIsSizeable() {
        let m = models.emotion
        let lex = m.patterns.filter { $0.label == "lex" }
        let withEmotion = m.patterns.indices.filter { i in
            m.patterns[i].label == "lex" && Emotion.allCases.contains { m.weights[i, m.dimension($0.rawValue)!] > 0 }
        }
        #expect(lex.count >= 3000)
        #expect(withEmotion.count >= 3000, "entries with Plutchik weights: \(withEmotion.count)")
        for label in ["degree", "negator", "contrast"] {
            #expect(m.patterns.contains { $0.label == label }, "class \(label)")
        }
        let negators = m.patterns.filter { $0.label == "negator" }
        #expect(negators.allSatisfy { $0.isProtected })
    }

    @Test func reasoningHasEnoughMarkersForEveryRelation() {
        let counts = models.reasoning.countsByLabel()
        #expect(models.reasoning.patterns.count >= 150)
        for relation in Relation.allCases {
            #expect(counts.filter { $0.key.hasPrefix(relation.rawValue + ":") }.values.reduce(0, +) >= 10, "\(relation)")
        }
    }

    @Test func valuesHaveEightyEntriesEach() {
        let m = models.values
        for (k, value) in SchwartzValue.allCases.enumerated() {
            let n = m.patterns.indices.filter { m.weights[$0, k] > 0 }.count
            #expect(n >= 80, "\(value.rawValue): \(n)")
        }
    }

    @Test func theoryOfMindHasTwoHundredStateWords() {
        let m = models.theoryOfMind
        let states = m.patterns.filter { MentalStateType(rawValue: $0.label) != nil }
        #expect(states.count >= 200)
        for type in MentalStateType.allCases {
            #expect(states.contains { $0.label == type.rawValue }, "\(type)")
        }
        #expect(m.patterns.contains { $0.label == "agent.name" })
    }

    @Test func narrativeHasItsWordClasses() {
        let counts = models.narrative.countsByLabel()
        for label in [
            "temporal", "verb.base", "verb.past", "verb.pp", "article", "preposition", "adverb", "cognitive", "pronoun.first", "pronoun.third", "aux.future",
        ] {
            #expect((counts[label] ?? 0) > 0, "\(label)")
        }
    }

    @Test func everyModuleHasAVersion() {
        let versions = Set(Module.allCases.map { models[$0].version })
        #expect(versions.count == 5)
        #expect(models.version.hasPrefix("soma-"))
    }
}
