import Foundation
import Soma
import Testing

struct TokenizerTests {
    let pipeline = TextPipeline()

    @Test func contractionsStayWholeAndNegate() {
        let doc = pipeline.process("I don't think she’s coming, can't you see?")
        #expect(doc.words == ["i", "don't", "think", "she's", "coming", ",", "can't", "you", "see", "?"])
        let negated = Scope.negationMask(doc)
        #expect(negated[2])  // "think" is inside "don't"'s scope
        #expect(!negated[0])
    }

    @Test func negationScopeStopsAtClauseBreaks() {
        let doc = pipeline.process("It was not easy, but I loved it.")
        let mask = Scope.negationMask(doc)
        #expect(mask[doc.words.firstIndex(of: "easy")!])
        #expect(!mask[doc.words.firstIndex(of: "loved")!])
    }

    @Test func notOnlyIsNotANegation() {
        let doc = pipeline.process("not only fun but useful")
        #expect(!Scope.negationMask(doc)[doc.words.firstIndex(of: "fun")!])
    }

    @Test(arguments: [
        ("Visit https://example.com/a?b=1, then rest.", "https://example.com/a?b=1", Token.Kind.url),
        ("It costs 3.50 today", "3.50", .number),
        ("About 1,000 people", "1,000", .number),
        ("a self-aware robot", "self-aware", .word),
        ("great :) really", ":)", .emoticon),
        ("so sad :'( today", ":'(", .emoticon),
        ("I love it ❤️ yes", "❤️", .emoji),
        ("family 👨‍👩‍👧 trip", "👨‍👩‍👧", .emoji),
        ("thumbs 👍🏽 up", "👍🏽", .emoji),
        ("go 🇫🇷 team", "🇫🇷", .emoji),
    ])
    func specialTokens(text: String, expected: String, kind: Token.Kind) throws {
        let doc = pipeline.process(text)
        let token = try #require(doc.tokens.first { $0.text == expected })
        #expect(token.kind == kind)
    }

    @Test func capitalsAreFlagged() {
        let doc = pipeline.process("This is GREAT and Fine")
        #expect(doc.tokens[2].isAllCaps)
        #expect(!doc.tokens[4].isAllCaps)
        #expect(doc.tokens[4].isCapitalized)
    }

    @Test func emptyTextHasNoTokensAndNoSentences() {
        let doc = pipeline.process("")
        #expect(doc.tokens.isEmpty)
        #expect(doc.sentences.isEmpty)
        let blank = pipeline.process("   \n\n\t ")
        #expect(blank.tokens.isEmpty)
    }

    @Test func onlyPunctuationOrEmoji() {
        let punct = pipeline.process("?!... --- !!!")
        #expect(punct.tokens.allSatisfy { $0.kind == .punctuation })
        #expect(!punct.sentences.isEmpty)
        let emoji = pipeline.process("😀😀 🎉")
        #expect(emoji.tokens.map(\.kind) == [.emoji, .emoji, .emoji])
        #expect(emoji.sentences.count == 1)
    }

    @Test func mixedScriptsTokenise() {
        let doc = pipeline.process("Hello мир, こんにちは 世界! Ça va? שלום")
        #expect(doc.words.contains("мир"))
        #expect(doc.words.contains("ça"))
        #expect(doc.words.contains("שלום"))
        #expect(doc.sentences.count == 3)
    }

    @Test func normalisationComposesAndFoldsQuotes() {
        let decomposed = "cafe\u{301} \u{201C}quoted\u{201D} it\u{2019}s\u{200B}"
        #expect(TextNormalizer.normalize(decomposed) == "café \"quoted\" it's")
        #expect(TextNormalizer.normalize("a\r\nb\rc") == "a\nb\nc")
    }

    @Test func largeTextIsHandled() {
        let sentence = "I was furious because they lied to me, but I know she meant well. "
        let text = String(repeating: sentence, count: 100_000 / sentence.utf8.count + 1)
        #expect(text.utf8.count >= 100_000)
        let doc = pipeline.process(text)
        #expect(doc.sentences.count == 100_000 / sentence.utf8.count + 1)
        let results = Fixtures.engine.analyze(doc)
        #expect(results.modules.count == 5)
        #expect(results.emotion!.sentences.count == doc.sentences.count)
    }
}

struct TextInputTests {
    @Test func validUTF8Decodes() throws {
        #expect(try TextInput.decode(Array("héllo 😀".utf8)) == "héllo 😀")
    }

    @Test(arguments: [
        ([0x61, 0xFF, 0x62] as [UInt8], 1),
        ([0x68, 0x69, 0xC3] as [UInt8], 2),  // truncated sequence at the end
        ([0xED, 0xA0, 0x80] as [UInt8], 0),  // UTF-16 surrogate encoded in UTF-8
        ([0x41, 0xC0, 0xAF] as [UInt8], 1),  // overlong encoding
    ])
    func invalidUTF8IsRefusedWithItsOffset(bytes: [UInt8], offset: Int) {
        #expect(throws: TextInput.Error(code: .invalidUTF8, offset: offset)) {
            try TextInput.decode(bytes)
        }
    }
}

struct SentenceSplitterTests {
    let pipeline = TextPipeline()

    @Test(arguments: [
        ("Dr. Smith arrived. He was late.", ["Dr. Smith arrived.", "He was late."]),
        ("Bring fruit, e.g. apples. Then leave.", ["Bring fruit, e.g. apples.", "Then leave."]),
        ("She moved to the U.S. in May. It rained.", ["She moved to the U.S. in May.", "It rained."]),
        ("The rate is 3.5 percent. Fine.", ["The rate is 3.5 percent.", "Fine."]),
        ("\"Stop!\" she said. I stopped.", ["\"Stop!\" she said.", "I stopped."]),
        ("He said \"Go home.\" So we did.", ["He said \"Go home.\"", "So we did."]),
        ("Wait... what? Really?!", ["Wait... what?", "Really?!"]),
        ("I waited... Nothing happened.", ["I waited...", "Nothing happened."]),
        ("no punctuation at all", ["no punctuation at all"]),
        ("First line\n\nSecond paragraph", ["First line", "Second paragraph"]),
        ("Mrs. Jones met John F. Kennedy. Wow.", ["Mrs. Jones met John F. Kennedy.", "Wow."]),
    ])
    func splits(text: String, expected: [String]) {
        let doc = pipeline.process(text)
        #expect(doc.sentences.map { doc.text(of: $0) } == expected)
    }
}
