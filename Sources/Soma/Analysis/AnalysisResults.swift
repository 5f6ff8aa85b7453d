/// The `results` object of the HTTP contract: one entry per requested module.
public struct AnalysisResults: Codable, Sendable, Equatable {
    public var emotion: EmotionResult?
    public var reasoning: ReasoningResult?
    public var values: ValuesResult?
    public var theoryOfMind: TheoryOfMindResult?
    public var narrative: NarrativeResult?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case emotion, reasoning, values
        case theoryOfMind = "theory_of_mind"
        case narrative
    }

    /// The modules present in this result.
    public var modules: [Module] {
        var result: [Module] = []
        if emotion != nil { result.append(.emotion) }
        if reasoning != nil { result.append(.reasoning) }
        if values != nil { result.append(.values) }
        if theoryOfMind != nil { result.append(.theoryOfMind) }
        if narrative != nil { result.append(.narrative) }
        return result
    }
}
