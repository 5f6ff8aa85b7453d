/// How closely a compressed model's outputs follow the full FP32 model's, per module.
///
/// Each module's output is reduced to a *label* (what a user would read first) and a *score
/// vector*: emotion — dominant emotion / valence, arousal and the eight
/// emotions (the label is the dominant emotion, as a reader sees it first); reasoning — the set of relations / the number of chains; values — the top value /
/// the ten scores; theory of mind — the first mental state's type / perspective taking; narrative
/// — tense and perspective / the fifteen arc values.
public struct Agreement: Sendable {
    public var module: Module
    public var texts: Int
    /// Fraction of texts with the same label.
    public var labelAgreement: Double
    /// Mean over texts of the mean absolute difference of the score vectors.
    public var meanAbsoluteDifference: Double

    public static func signature(_ module: Module, _ r: AnalysisResults) -> (label: String, scores: [Double]) {
        switch module {
        case .emotion:
            let e = r.emotion!
            return (e.dominant, [e.valence, e.arousal] + Emotion.allCases.map { e.emotions[$0.rawValue] ?? 0 })
        case .reasoning:
            let x = r.reasoning!
            return (Set(x.chains.map(\.relation)).sorted().joined(separator: "+"), [Double(x.chains.count)])
        case .values:
            let v = r.values!
            let top = v.hierarchy.first { $0.score > 0 }?.value ?? "none"
            let scores = SchwartzValue.allCases.map { value in v.hierarchy.first { $0.value == value.rawValue }?.score ?? 0 }
            return (top, scores)
        case .theoryOfMind:
            let t = r.theoryOfMind!
            return (t.agents.first?.states.first?.type ?? "none", [t.perspectiveTaking])
        case .narrative:
            let n = r.narrative!
            return ("\(n.tense)/\(n.perspective)", n.arc.staging + n.arc.plotProgression + n.arc.cognitiveTension)
        }
    }

    /// Compares `candidate` with `reference` on `module` over `texts`.
    public static func compare(_ module: Module, reference: Engine, candidate: Engine, texts: [String]) -> Agreement {
        var same = 0
        var diff = 0.0
        for text in texts {
            let doc = reference.document(text)
            let a = signature(module, reference.analyze(doc, modules: [module]))
            let b = signature(module, candidate.analyze(doc, modules: [module]))
            if a.label == b.label { same += 1 }
            let d = zip(a.scores, b.scores).map { abs($0 - $1) }
            diff += d.isEmpty ? 0 : d.reduce(0, +) / Double(d.count)
        }
        let n = Double(max(1, texts.count))
        return Agreement(module: module, texts: texts.count, labelAgreement: Double(same) / n, meanAbsoluteDifference: diff / n)
    }
}
