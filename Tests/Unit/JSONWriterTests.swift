import Foundation
import Soma
import Testing

struct JSONWriterTests {
    static let extraTexts = [
        "", "\"quoted\" and \\ backslash\tand tab\nnew line \u{1} control",
        "I was furious because they lied to me, but I know she meant well. 😡🎉",
        "Tomorrow we will fly to Lisbon. Before that, we had stopped for coffee.",
    ]

    /// The hand-written encoder and `JSONEncoder` produce the same JSON document.
    @Test func matchesJSONEncoder() throws {
        var texts = Self.extraTexts
        for m in Module.allCases { texts += try EvaluationSet.load(m, from: Fixtures.eval).items.prefix(40).map(\.text) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for text in texts {
            let results = Fixtures.engine.analyze(text)
            let ours = try JSONSerialization.jsonObject(with: Data(results.json())) as! NSDictionary
            let theirs = try JSONSerialization.jsonObject(with: encoder.encode(results)) as! NSDictionary
            #expect(ours == theirs, "\(text)")
            // And it decodes back to the same value.
            #expect(try JSONDecoder().decode(AnalysisResults.self, from: Data(results.json())) == results)
        }
    }

    @Test func keysAreSortedAndStringsEscaped() throws {
        var w = JSONWriter()
        w.beginObject()
        w.key("a"); w.string("x\"y\\z\n\u{1F}")
        w.key("b"); w.beginArray(); w.number(1.0); w.number(0.25); w.bool(true); w.null(); w.endArray()
        w.key("c"); w.beginObject(); w.endObject()
        w.endObject()
        #expect(String(decoding: w.bytes, as: UTF8.self) == #"{"a":"x\"y\\z\n\u001f","b":[1,0.25,true,null],"c":{}}"#)
    }

    /// Integers are written digit by digit, both ends of the range and negative zero included.
    @Test func integers() {
        var w = JSONWriter()
        w.beginArray()
        for x in [Int.min, -42, 0, 7, Int.max] { w.number(x) }
        for x in [-0.0, 1e14, -3.0, 0.5] { w.number(x) }
        w.endArray()
        #expect(String(decoding: w.bytes, as: UTF8.self) == "[-9223372036854775808,-42,0,7,9223372036854775807,0,100000000000000,-3,0.5]")
    }

    /// Numbers of up to four decimals (every rounded score) are written without a String, as
    /// `description` writes them; any other number falls back to `description`.
    @Test func decimalsAsDescriptionWritesThem() {
        var values: [Double] = (-20_000...20_000).map { Double($0) / 10_000 }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let n = Int64.random(in: -9_999_999_999_999...9_999_999_999_999, using: &generator)
            values.append(Double(n) / 10_000)  // up to 10⁹, past the fast path's range
            values.append(Double.random(in: -2...2, using: &generator))  // most have more decimals
        }
        values += [1e-4, -1e-4, 5e-5, 0.00015, 999_999_999.9999, 1e9 + 0.5, 0.1 + 0.2, 1.0 / 3, 2.5e-7, .pi]
        for x in values {
            var w = JSONWriter()
            w.number(x)
            let expected = x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : x.description
            #expect(String(decoding: w.bytes, as: UTF8.self) == expected, "\(x)")
        }
    }

    /// Commas are tracked per container: past 64 levels too, and for siblings after a deep one.
    @Test func nestingDeeperThanSixtyFourLevels() throws {
        var w = JSONWriter()
        w.beginObject()
        w.field("deep")
        w.beginArray()
        for _ in 0..<70 {
            w.beginArray()
            w.number(1)
        }
        for _ in 0..<70 {
            w.endArray()
            w.number(2)
        }
        w.endArray()
        w.field("next"); w.bool(false)
        w.endObject()
        let text = String(decoding: w.bytes, as: UTF8.self)
        let expected = #"{"deep":["# + String(repeating: "[1,", count: 70).dropLast() + String(repeating: "],2", count: 70) + #"],"next":false}"#
        #expect(text == expected)
        #expect(try JSONSerialization.jsonObject(with: Data(w.bytes)) is NSDictionary)
    }
}
