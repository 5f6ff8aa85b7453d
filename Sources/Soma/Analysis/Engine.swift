/// The analysis engine: the shared text pipeline in front of the five analysers.
///
/// An `Engine` is an immutable value: build it once from a `ModelSet` and share it.
public struct Engine: Sendable {
    public let models: ModelSet
    public let emotion: EmotionAnalyzer
    public let reasoning: ReasoningAnalyzer
    public let values: ValuesAnalyzer
    public let theoryOfMind: TheoryOfMindAnalyzer
    public let narrative: NarrativeAnalyzer
    let pipeline = TextPipeline()

    public init(models: ModelSet) {
        self.models = models
        emotion = EmotionAnalyzer(model: models.emotion)
        reasoning = ReasoningAnalyzer(model: models.reasoning)
        values = ValuesAnalyzer(model: models.values)
        theoryOfMind = TheoryOfMindAnalyzer(model: models.theoryOfMind)
        narrative = NarrativeAnalyzer(model: models.narrative)
    }

    public func document(_ text: String) -> Document { pipeline.process(text) }

    /// Runs the chosen modules (all when `modules` is empty) over `text`.
    public func analyze(_ text: String, modules: Set<Module> = []) -> AnalysisResults {
        analyze(document(text), modules: modules)
    }

    public func analyze(_ doc: Document, modules: Set<Module> = []) -> AnalysisResults {
        var results = AnalysisResults()
        for m in Module.allCases where modules.isEmpty || modules.contains(m) {
            analyzer(m).analyze(doc, into: &results)
        }
        return results
    }

    /// The analyser of `module`, in the form the pipeline runs it.
    public func analyzer(_ module: Module) -> ModuleAnalyzer {
        switch module {
        case .emotion: .emotion(emotion)
        case .reasoning: .reasoning(reasoning)
        case .values: .values(values)
        case .theoryOfMind: .theoryOfMind(theoryOfMind)
        case .narrative: .narrative(narrative)
        }
    }
}
