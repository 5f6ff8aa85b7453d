import Foundation
import Soma
import Testing

/// `TextLine`, the JSON Lines fast path, must answer exactly what the general path (Foundation's
/// parser and writer, `JSONLinesRunner`) answers for every line it accepts, and must refuse what
/// only the general path handles.
struct TextLineTests {
    /// The general path's output for a parsed line: the object without "text", an id (null when
    /// absent), keys sorted, `"results"` spliced last.
    private func generalOutput(_ line: String, results: [UInt8]) throws -> [UInt8]? {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed]) as? [String: Any],
            object["text"] is String
        else { return nil }
        var echoed = object
        echoed.removeValue(forKey: "text")
        if echoed["id"] == nil { echoed["id"] = NSNull() }
        var head = Array(try JSONSerialization.data(withJSONObject: echoed, options: [.sortedKeys, .withoutEscapingSlashes]))
        head.removeLast()
        head.append(contentsOf: #","results":"#.utf8)
        head.append(contentsOf: results)
        head.append(UInt8(ascii: "}"))
        return head
    }

    private func fast(_ line: String) -> TextLine? {
        var bytes = Array(line.utf8)
        return bytes.withUnsafeMutableBufferPointer { TextLine.parse(UnsafeBufferPointer($0)) }
    }

    private func generalText(_ line: String) -> String? {
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed]) as? [String: Any]
        return object?["text"] as? String
    }

    static let accepted: [String] = [
        #"{"id": 1, "text": "I love it."}"#,
        #"{"text": "no id"}"#,
        #"{"id": null, "text": "null id"}"#,
        #"{"id": "abc-1/2<>&", "text": "printable ASCII id"}"#,
        #"{"id": 0, "text": "zero"}"#,
        #"{"id": -17, "text": "negative"}"#,
        #"{"id": 123456789012345, "text": "15 digits"}"#,
        #"{"text": "a \"quoted\" word\n\tline \u2019 \ud83d\ude00 \/ slash \\ back \u0000 nul"}"#,
        "  { \"id\" : 5 ,\t\"text\" : \"spaces\"  }  ",
        #"{"id": 1, "text": ""}"#,
        #"{"text": "é accents — ünïcödé, 日本語"}"#,
        #"{"text": "id after", "id": 7}"#,
    ]

    static let refused: [String] = [
        #"{"id": "caf\u00e9", "text": "escaped id"}"#,
        #"{"id": "café", "text": "non-ASCII id"}"#,
        #"{"id": -0, "text": "minus zero"}"#,
        #"{"id": 1.0, "text": "fraction"}"#,
        #"{"id": 1e3, "text": "exponent"}"#,
        #"{"id": 1234567890123456, "text": "16 digits"}"#,
        #"{"id": 012, "text": "leading zero"}"#,
        #"{"id": true, "text": "boolean id"}"#,
        #"{"id": [1], "text": "array id"}"#,
        #"{"id": 1, "id": 2, "text": "duplicate id"}"#,
        #"{"text": "a", "text": "b"}"#,
        #"{"id": 1, "text": "x", "extra": {"k": [1]}}"#,
        #"{"id": 1, "text": 5}"#,
        #"{"id": 1}"#,
        #"[1, 2]"#,
        #""just a string""#,
        #"{"id": 1, "text": "trailing"} x"#,
        #"{"id": 1, "text": "unterminated}"#,
        #"{"text": "lone \ud83d high surrogate"}"#,
        #"{"text": "lone \ude00 low surrogate"}"#,
        #"{"text": "bad \x escape"}"#,
        "{\"text\": \"raw control \u{01} byte\"}",
        #"{"results": 1, "text": "has results"}"#,
        "",
        "{}",
    ]

    @Test(arguments: accepted)
    func acceptedLinesAnswerWhatTheGeneralPathAnswers(line: String) throws {
        let parsed = try #require(fast(line))
        #expect(parsed.text == generalText(line))
        let analysis = Fixtures.engine.analyze(parsed.text)
        #expect(parsed.output(analysis) == (try generalOutput(line, results: analysis.json())))
    }

    @Test(arguments: refused)
    func linesOnlyTheGeneralPathHandlesAreRefused(line: String) {
        #expect(fast(line) == nil)
    }

    @Test func invalidUTF8InTheTextIsLeftToTheGeneralPath() {
        for text: [UInt8] in [[0xFF], [0x61, 0xC3], [0xED, 0xA0, 0x80], [0xC3, 0x28]] {
            var line = Array(#"{"id": 1, "text": ""#.utf8) + text + Array(#""}"#.utf8)
            #expect(line.withUnsafeMutableBufferPointer { TextLine.parse(UnsafeBufferPointer($0)) } == nil)
            line = Array(#"{"text": "\n"#.utf8) + text + Array(#""}"#.utf8)
            #expect(line.withUnsafeMutableBufferPointer { TextLine.parse(UnsafeBufferPointer($0)) } == nil)
        }
        var valid = Array(#"{"text": "caf"#.utf8) + [0xC3, 0xA9] + Array(#""}"#.utf8)
        #expect(valid.withUnsafeMutableBufferPointer { TextLine.parse(UnsafeBufferPointer($0)) }?.text == "café")
    }

    /// Random texts (escapes, controls, quotes, astral scalars) and ids, serialised by Foundation:
    /// whatever the fast path accepts, it reads as Foundation does.
    @Test func randomLinesAgreeWithFoundation() throws {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [Character] = ["a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\u{01}", "é", "—", "😀", "日", "\u{2028}", "'", "{", "}"]
        var accepted = 0
        for _ in 0..<2_000 {
            let text = String((0..<Int.random(in: 0...20, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            var object: [String: Any] = ["text": text]
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: object["id"] = Int.random(in: -1_000_000...1_000_000, using: &rng)
            case 1: object["id"] = "id-\(Int.random(in: 0...999, using: &rng))"
            case 2: object["id"] = NSNull()
            default: break
            }
            let line = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
            guard let parsed = fast(line) else { continue }
            accepted += 1
            #expect(parsed.text == text)
            let none = AnalysisResults()
            #expect(parsed.output(none) == (try generalOutput(line, results: none.json())))
        }
        // Foundation writes only forms the fast path takes: it must have taken every line.
        #expect(accepted == 2_000)
    }
}
