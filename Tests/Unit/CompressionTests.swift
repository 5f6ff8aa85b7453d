import Foundation
import Soma
import Testing

/// Accuracy under compression: FP16 and the default pruning against the FP32 unpruned models, on
/// every module's evaluation set and on unseen reference text; the size goal; held-out floors with
/// the compressed models. Needs Debian's fortunes package (the reference corpus), which `make test`
/// installs; without it these tests fail rather than skip.
@Suite(.serialized) struct CompressionTests {
    static let optimizer: Optimizer = {
        do {
            var evaluation: [Module: EvaluationSet] = [:]
            for m in Module.allCases { evaluation[m] = try EvaluationSet.load(m, from: Fixtures.eval) }
            return Optimizer(sources: Fixtures.modelSet, corpus: try ReferenceCorpus.load(), evaluation: evaluation)
        } catch {
            fatalError("compression tests need the reference corpus: \(error)")
        }
    }()

    /// Unseen reference text used per module (the whole agreement part is used by `soma optimize --report`).
    static let corpusTexts = 1500

    @Test(arguments: Module.allCases)
    func fp16AgreesWithFP32(module: Module) {
        let o = Self.optimizer
        let half = o.compress(module, precision: .fp16, minFrequency: 0)
        let (e, c) = o.agreement(half, corpusLimit: Self.corpusTexts)
        print(
            String(
                format: "fp16 %@: eval %.1f%% (MAD %.4f), corpus %.1f%% (MAD %.4f)", module.rawValue, e.labelAgreement * 100, e.meanAbsoluteDifference,
                c.labelAgreement * 100, c.meanAbsoluteDifference))
        #expect(e.labelAgreement >= 0.99, "\(module) fp16 eval agreement \(e.labelAgreement)")
        #expect(c.labelAgreement >= 0.99, "\(module) fp16 corpus agreement \(c.labelAgreement)")
        #expect(c.texts >= 1000)
    }

    @Test(arguments: Module.allCases)
    func defaultPruningAgreesWithUnpruned(module: Module) {
        let o = Self.optimizer
        let pruned = o.compress(module, precision: .fp16, minFrequency: Optimizer.defaultMinFrequency)
        let (e, c) = o.agreement(pruned)
        print(
            String(
                format: "fp16+pruned %@: %d of %d patterns, eval %.1f%%, corpus %.1f%% over %d texts", module.rawValue, pruned.patterns.count,
                o.sources[module].patterns.count, e.labelAgreement * 100, c.labelAgreement * 100, c.texts))
        #expect(e.labelAgreement >= 0.97, "\(module) pruned eval agreement \(e.labelAgreement)")
        #expect(c.labelAgreement >= 0.97, "\(module) pruned corpus agreement \(c.labelAgreement)")
        // Protected patterns always survive.
        let kept = Set(pruned.patterns.map { $0.tokens.joined(separator: " ") + "\t" + $0.label })
        for p in o.sources[module].patterns where p.isProtected {
            #expect(kept.contains(p.tokens.joined(separator: " ") + "\t" + p.label))
        }
    }

    @Test func defaultModelsAreSixtyPercentSmallerOnDisk() throws {
        let o = Self.optimizer
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("soma-models-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("fp32"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("default"), withIntermediateDirectories: true)
        var full = 0
        var compressed = 0
        for m in Module.allCases {
            let a = dir.appendingPathComponent("fp32").appendingPathComponent(CompiledModel.fileName(m))
            let b = dir.appendingPathComponent("default").appendingPathComponent(CompiledModel.fileName(m))
            try CompiledModel.write(o.compress(m, precision: .fp32, minFrequency: 0), to: a)
            try CompiledModel.write(
                o.compress(m, precision: .fp16, minFrequency: Optimizer.defaultMinFrequency), to: b, minFrequency: Optimizer.defaultMinFrequency)
            full += try FileManager.default.attributesOfItem(atPath: a.path)[.size] as! Int
            compressed += try FileManager.default.attributesOfItem(atPath: b.path)[.size] as! Int
        }
        let saving = 1 - Double(compressed) / Double(full)
        print(String(format: "compiled models: %d bytes FP32 unpruned, %d bytes default (FP16 + pruning): %.1f%% smaller", full, compressed, saving * 100))
        #expect(saving >= 0.60)
        // The compressed directory loads as a model set and serves.
        let set = try ModelSet.load(from: dir.appendingPathComponent("default"))
        #expect(set.emotion.weights.precision == .fp16)
        #expect(Engine(models: set).analyze("I am so happy today").emotion!.valence > 0)
    }

    @Test func heldOutFloorsHoldWithTheDefaultModels() throws {
        let o = Self.optimizer
        let models = o.compressed(precision: .fp16, minFrequency: Optimizer.defaultMinFrequency)
        let evaluator = Evaluator(engine: Engine(models: models))
        var scores: [Evaluator.Score] = []
        for task in Evaluator.Task.all {
            let set = try EvaluationSet.load(task.module, from: Fixtures.eval)
            scores.append(evaluator.score(task, on: set, split: .heldout))
        }
        print(Evaluator.table(scores, title: "held-out accuracy, default compressed models (FP16 + pruning)"))
        for s in scores {
            let floor = try #require(AccuracyTests.floors[s.task])
            #expect(s.accuracy >= floor, "\(s.task): \(s.accuracy) < \(floor)")
        }
    }

    /// Everyday text (docs/ACCURACY.md's sets written blind to the lexicons: the hard dev,
    /// validation and blind held-out sets), which the pruning corpus of quotations never saw:
    /// the default compressed models give the source models' labels on ≥ 97 % of it, pooled (the
    /// bar of `defaultPruningAgreesWithUnpruned` on unseen text), and score every task of the
    /// blind set within two items of them. Aggregate figures only: no set's items are printed.
    @Test func theDefaultCompressedModelsAgreeOnEverydayText() throws {
        let o = Self.optimizer
        let compressed = Engine(models: o.compressed(precision: .fp16, minFrequency: Optimizer.defaultMinFrequency))
        let source = Engine(models: Fixtures.modelSet)
        let blind = Fixtures.root.appendingPathComponent("Fixtures/eval-blind")
        let secondReader = blind.appendingPathComponent("second-reader")
        for module in Module.allCases {
            var sets = [("blind", try EvaluationSet.load(module, from: blind, secondReader: secondReader))]
            for dir in ["Fixtures/eval-dev", "Fixtures/eval-val"] {
                let url = Fixtures.root.appendingPathComponent(dir)
                if FileManager.default.fileExists(atPath: url.appendingPathComponent("\(module.rawValue).jsonl").path) {
                    sets.append((dir, try EvaluationSet.load(module, from: url)))
                }
            }
            var same = 0.0
            var texts = 0
            for (name, set) in sets {
                let agreement = Agreement.compare(module, reference: source, candidate: compressed, texts: set.items.map(\.text))
                print(
                    String(
                        format: "%@, %@: compressed labels agree on %.1f%% of %d texts", name, module.rawValue, agreement.labelAgreement * 100, agreement.texts)
                )
                same += agreement.labelAgreement * Double(agreement.texts)
                texts += agreement.texts
            }
            #expect(same / Double(texts) >= 0.97, "\(module): \(same / Double(texts)) of \(texts) everyday texts")
        }
        for task in Evaluator.Task.labelGuide {
            let set = try EvaluationSet.load(task.module, from: blind, secondReader: secondReader)
            let a = Evaluator(engine: source).score(task, on: set, split: .heldout)
            let b = Evaluator(engine: compressed).score(task, on: set, split: .heldout)
            print(String(format: "blind set, %@: source %.1f%%, compressed %.1f%%", task.name, a.accuracy * 100, b.accuracy * 100))
            #expect(b.accuracy >= a.accuracy - 2.0 / Double(a.items) - 1e-9, "\(task.name): source \(a.accuracy), compressed \(b.accuracy)")
        }
    }

    @Test func accuracyIsRecordedInTheHeader() throws {
        let o = Self.optimizer
        let model = o.compress(.values, precision: .fp16, minFrequency: Optimizer.defaultMinFrequency)
        let accuracy = o.heldOutAccuracy(model)
        let header = try CompiledModel.header(of: CompiledModel.encode(model, accuracy: Float(accuracy)))
        #expect(header.accuracy == Float(accuracy))
        #expect(accuracy >= 0.70)
    }

    /// The exported accuracy is the mean of every task of the module, its weakest included.
    @Test func theRecordedAccuracyIsTheMeanOfEveryTaskOfTheModule() throws {
        let o = Self.optimizer
        let model = o.compress(.narrative, precision: .fp16, minFrequency: Optimizer.defaultMinFrequency)
        let set = try EvaluationSet.load(.narrative, from: Fixtures.eval)
        let evaluator = Evaluator(engine: Engine(models: o.replacing(model)))
        let tasks = Evaluator.Task.all.filter { $0.module == .narrative }
        #expect(tasks.map(\.name) == ["narrative tense", "narrative perspective", "narrative first event"])
        let scores = tasks.map { evaluator.score($0, on: set, split: .heldout).accuracy }
        print("narrative held-out per task:", scores.map { String(format: "%.3f", $0) }, "mean", String(format: "%.3f", scores.reduce(0, +) / 3))
        #expect(abs(o.heldOutAccuracy(model) - scores.reduce(0, +) / 3) < 1e-9)
    }
}
