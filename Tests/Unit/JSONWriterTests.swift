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
}
