import Foundation

/// Scores the engine on evaluation sets, next to a majority-class and a plain keyword baseline.
///
/// Each module has one or more *tasks* (emotion: valence sign and dominant emotion; narrative:
/// tense and perspective, …); a task turns an item and an analysis into (gold, predicted, correct).
public struct Evaluator: Sendable {
    public struct Task: Sendable {
        public var module: Module
        public var name: String
        /// The gold label of an item.
        public var gold: @Sendable (EvaluationSet.Item) -> String
        /// The engine's prediction from its results.
        public var predict: @Sendable (AnalysisResults) -> [String]
        /// The keyword baseline's prediction from the raw text.
        public var keyword: @Sendable (String) -> [String]
        /// The no-rules baseline: the module's own lexicon, matched over the document (longest
        /// match, left to right) and summed, without negation, contrast, spans or filters. The
        /// margin over it is what the rules add (`EvaluationTasks.swift`).
        public var lexicon: @Sendable (LexiconMatches) -> [String]
        /// Whether a prediction is right (default: first predicted label equals gold).
        public var correct: @Sendable (_ gold: String, _ predicted: [String]) -> Bool = { gold, predicted in predicted.first == gold }
    }

    public struct Score: Sendable {
        public var task: String
        public var module: Module
        public var items: Int
        public var accuracy: Double
        public var majority: Double
        public var keyword: Double
        /// The no-rules lexicon-sum baseline's accuracy.
        public var lexiconSum: Double
        /// Gold label → the engine's first predicted label → items: every item, right or wrong.
        public var confusion: [String: [String: Int]]
        public var misses: [(id: String, gold: String, predicted: String)]
    }

    /// A document and every match of its module's patterns (longest first, left to right, no
    /// slot filled by an agent): what the lexicon-sum baseline reads.
    public struct LexiconMatches: Sendable {
        public let model: ModuleModel
        public let document: Document
        public let matches: [PatternMatcher.Match]

        /// The labels of the matches, in text order.
        public var labels: [String] { matches.map { model.patterns[$0.pattern].label } }

        /// The sum over the matches labelled `label` of their weight `dimension`.
        public func sum(_ dimension: String, label: String? = nil) -> Float {
            matches.reduce(0) { total, m in
                label == nil || model.patterns[m.pattern].label == label ? total + model.weight(m.pattern, dimension) : total
            }
        }
    }

    public let engine: Engine
    public init(engine: Engine) { self.engine = engine }

    /// - Parameter majorityFrom: where the majority class is learnt (its dev split); by default
    ///   `set`'s own. Items read twice count only where both readings give the same gold.
    public func score(_ task: Task, on set: EvaluationSet, split: EvaluationSet.Split?, majorityFrom: EvaluationSet? = nil) -> Score {
        let items = set.items(split).filter { item in item.asSecondReading.map { task.gold($0) == task.gold(item) } ?? true }
        // The majority class is learnt from the dev split, as a tuned system would be.
        var counts: [String: Int] = [:]
        for item in (majorityFrom ?? set).items(.dev) { counts[task.gold(item), default: 0] += 1 }
        let majority = counts.max { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key }?.key ?? ""
        var right = 0
        var majorityRight = 0
        var keywordRight = 0
        var lexiconRight = 0
        var confusion: [String: [String: Int]] = [:]
        var misses: [(String, String, String)] = []
        let model = engine.models[task.module]
        for item in items {
            let gold = task.gold(item)
            // One document for the engine and the lexicon baseline (the text is tokenised once).
            let doc = engine.document(item.text)
            let predicted = task.predict(engine.analyze(doc, modules: [task.module]))
            if task.correct(gold, predicted) { right += 1 } else { misses.append((item.id, gold, predicted.joined(separator: ","))) }
            confusion[gold, default: [:]][predicted.first ?? "", default: 0] += 1
            if task.correct(gold, [majority]) { majorityRight += 1 }
            if task.correct(gold, task.keyword(item.text)) { keywordRight += 1 }
            let lexicon = LexiconMatches(model: model, document: doc, matches: model.matcher.longestMatches(in: doc, ids: model.matcher.tokenIDs(doc)))
            if task.correct(gold, task.lexicon(lexicon)) { lexiconRight += 1 }
        }
        let n = Double(max(items.count, 1))
        return Score(
            task: task.name, module: task.module, items: items.count, accuracy: Double(right) / n, majority: Double(majorityRight) / n,
            keyword: Double(keywordRight) / n, lexiconSum: Double(lexiconRight) / n, confusion: confusion, misses: misses)
    }

    /// A score's confusion matrix as a Markdown table (rows: gold; columns: predicted), aggregate
    /// counts only.
    public static func confusionTable(_ score: Score) -> String {
        let gold = score.confusion.keys.sorted()
        let predicted = Set(score.confusion.values.flatMap(\.keys)).union(gold).sorted()
        var lines = ["| gold \\ predicted | " + predicted.map { $0.isEmpty ? "(none)" : $0 }.joined(separator: " | ") + " |"]
        lines.append("|---|" + predicted.map { _ in "---|" }.joined())
        for g in gold {
            lines.append("| \(g) | " + predicted.map { String(score.confusion[g]?[$0] ?? 0) }.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n")
    }

    /// A fixed-width table of scores, for test output and reports.
    public static func table(_ scores: [Score], title: String) -> String {
        var lines = [title, "task                        items  accuracy  majority  keyword  lexicon sum"]
        for s in scores {
            let name = s.task.padding(toLength: 26, withPad: " ", startingAt: 0)
            func pct(_ x: Double) -> String {
                let text = String(Int((x * 1000).rounded()))
                let padded = String(repeating: " ", count: max(0, 4 - text.count)) + text
                return String(padded.dropLast()) + "." + String(padded.last!) + " %"
            }
            lines.append(
                "\(name)  \(String(s.items).leftPad(5))  \(pct(s.accuracy).leftPad(8))  \(pct(s.majority).leftPad(8))  \(pct(s.keyword).leftPad(7))  \(pct(s.lexiconSum).leftPad(11))"
            )
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
