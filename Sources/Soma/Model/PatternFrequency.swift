/// Counts, for each pattern of a model, the fraction of documents in which it fires.
public enum PatternFrequency {
    /// `result[i]` = documents where `model.patterns[i]` matches anywhere / all documents.
    public static func measure(_ model: ModuleModel, over texts: [String], pipeline: TextPipeline = TextPipeline()) -> [Float] {
        guard !texts.isEmpty else { return [Float](repeating: 0, count: model.patterns.count) }
        var counts = [Int](repeating: 0, count: model.patterns.count)
        var seen = [Int](repeating: -1, count: model.patterns.count)
        for (d, text) in texts.enumerated() {
            let doc = pipeline.process(text)
            let ids = model.matcher.tokenIDs(doc)
            for i in 0..<doc.tokens.count {
                for m in model.matcher.matches(at: i, in: doc, ids: ids, isAgent: { Self.looksLikeAgent(doc, $0) }) where seen[m.pattern] != d {
                    seen[m.pattern] = d
                    counts[m.pattern] += 1
                }
            }
        }
        let n = Float(texts.count)
        return counts.map { Float($0) / n }
    }

    /// Template slots need an agent test that does not depend on the model being measured.
    static func looksLikeAgent(_ doc: Document, _ i: Int) -> Bool {
        let t = doc.tokens[i]
        return AgentDetector.pronouns[t.lower] != nil || (t.isCapitalized && doc.sentenceOfToken[i] == doc.sentenceOfToken[max(0, i - 1)] && i > 0)
    }
}
