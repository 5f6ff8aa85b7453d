/// One module's analyser, whichever module: what the pipeline keeps per loaded model.
public enum ModuleAnalyzer: Sendable {
    case emotion(EmotionAnalyzer)
    case reasoning(ReasoningAnalyzer)
    case values(ValuesAnalyzer)
    case theoryOfMind(TheoryOfMindAnalyzer)
    case narrative(NarrativeAnalyzer)

    public init(model: ModuleModel) {
        switch model.module {
        case .emotion: self = .emotion(EmotionAnalyzer(model: model))
        case .reasoning: self = .reasoning(ReasoningAnalyzer(model: model))
        case .values: self = .values(ValuesAnalyzer(model: model))
        case .theoryOfMind: self = .theoryOfMind(TheoryOfMindAnalyzer(model: model))
        case .narrative: self = .narrative(NarrativeAnalyzer(model: model))
        }
    }

    public var model: ModuleModel {
        switch self {
        case .emotion(let a): a.model
        case .reasoning(let a): a.model
        case .values(let a): a.model
        case .theoryOfMind(let a): a.model
        case .narrative(let a): a.model
        }
    }

    /// Runs this module over `doc` and stores its result in `results`.
    public func analyze(_ doc: Document, into results: inout AnalysisResults) {
        Slowdown.around {
            switch self {
            case .emotion(let a): results.emotion = a.analyze(doc)
            case .reasoning(let a): results.reasoning = a.analyze(doc)
            case .values(let a): results.values = a.analyze(doc)
            case .theoryOfMind(let a): results.theoryOfMind = a.analyze(doc)
            case .narrative(let a): results.narrative = a.analyze(doc)
            }
        }
    }
}
