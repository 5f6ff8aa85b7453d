import ArgumentParser
import Foundation
import Soma

/// `soma optimize`: compile every module's source model into a versioned binary file, pruned and
/// quantised, with an optional size/agreement/accuracy report over pruning thresholds.
struct Optimize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compile model sources into binary models (FP16 + frequency pruning by default)."
    )

    @Option(name: .long, help: "Directory of model sources.")
    var `in`: String = "Fixtures/models"

    @Option(name: .long, help: "Output directory for the compiled models.")
    var out: String

    @Option(name: .long, help: "Weight precision: fp32 or fp16.")
    var precision: String = "fp16"

    @Option(name: .long, help: "Prune patterns firing in fewer than this fraction of reference documents (protected ones are kept).")
    var minFrequency: Float = Optimizer.defaultMinFrequency

    @Option(name: .long, help: "Reference corpus directory (Debian's fortunes collections).")
    var corpus: String = ReferenceCorpus.defaultDirectory.path

    @Option(name: .long, help: "Directory of evaluation sets (held-out accuracy is recorded in each model).")
    var eval: String = "Fixtures/eval"

    @Flag(name: .long, help: "Print the trade-off table over thresholds 0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2 and write it as CSV (and PNG with gnuplot).")
    var report = false

    func run() throws {
        guard let precision = WeightTable.Precision(rawValue: precision) else {
            throw ValidationError("--precision must be fp32 or fp16")
        }
        guard minFrequency >= 0, minFrequency < 1 else { throw ValidationError("--min-frequency must be in [0, 1)") }
        let started = Date()
        let sources = try ModelSet.loadSources(from: URL(fileURLWithPath: self.in, isDirectory: true))
        let corpus = try ReferenceCorpus.load(from: URL(fileURLWithPath: self.corpus, isDirectory: true))
        var evaluation: [Module: EvaluationSet] = [:]
        for m in Module.allCases {
            evaluation[m] = try? EvaluationSet.load(m, from: URL(fileURLWithPath: eval, isDirectory: true))
        }
        log(
            "reference corpus: \(corpus.texts(.frequency).count) documents for frequencies (\(corpus.frequencyCollections.count) collections), \(corpus.texts(.agreement).count) for agreement (\(corpus.agreementCollections.count) collections)"
        )
        let optimizer = Optimizer(sources: sources, corpus: corpus, evaluation: evaluation)
        let outDir = URL(fileURLWithPath: out, isDirectory: true)
        try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
        var total = 0
        var totalFP32 = 0
        for module in Module.allCases {
            let model = optimizer.compress(module, precision: precision, minFrequency: minFrequency)
            let accuracy = optimizer.heldOutAccuracy(model)
            let url = outDir.appendingPathComponent(CompiledModel.fileName(module))
            try CompiledModel.write(model, to: url, accuracy: accuracy.isNaN ? nil : Float(accuracy), minFrequency: minFrequency)
            let bytes = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
            let fp32 = CompiledModel.encode(optimizer.sources[module]).count
            total += bytes
            totalFP32 += fp32
            log(
                String(
                    format: "%@: %d of %d patterns, %d bytes (FP32 unpruned %d, %.1f%% smaller), held-out accuracy %.1f%% -> %@",
                    module.rawValue, model.patterns.count, optimizer.sources[module].patterns.count, bytes, fp32,
                    100 * (1 - Double(bytes) / Double(fp32)), accuracy * 100, url.path))
        }
        log(String(format: "all modules: %d bytes vs %d FP32 unpruned: %.1f%% smaller", total, totalFP32, 100 * (1 - Double(total) / Double(totalFP32))))
        if report {
            let rows = optimizer.report(precision: precision)
            print(Optimizer.table(rows))
            let csv = outDir.appendingPathComponent("optimize-report.csv")
            try Optimizer.csv(rows).write(to: csv, atomically: true, encoding: .utf8)
            log("report: \(csv.path)")
            plot(csv: csv, png: outDir.appendingPathComponent("optimize-report.png"))
        }
        log(String(format: "done in %.1f s", Date().timeIntervalSince(started)))
    }

    func log(_ line: String) {
        FileHandle.standardError.write(Data("soma optimize: \(line)\n".utf8))
    }

    /// Size against agreement per module, where gnuplot is installed.
    func plot(csv: URL, png: URL) {
        let gnuplot = ["/usr/bin/gnuplot", "/usr/local/bin/gnuplot"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let gnuplot else {
            log("gnuplot not installed: no PNG (the CSV has the same table)")
            return
        }
        let script = """
            set terminal png size 900,600 noenhanced
            set output '\(png.path)'
            set datafile separator ','
            set title 'Compiled model size against label agreement with FP32 unpruned (unseen reference text)'
            set xlabel 'bytes'
            set ylabel 'label agreement'
            set key bottom right
            plot for [m in 'emotion reasoning values theory_of_mind narrative'] '\(csv.path)' using (strcol(1) eq m ? $5 : NaN):(strcol(1) eq m ? $8 : NaN) with linespoints title m
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: gnuplot)
        let pipe = Pipe()
        process.standardInput = pipe
        do {
            try process.run()
            pipe.fileHandleForWriting.write(Data(script.utf8))
            try pipe.fileHandleForWriting.close()
            process.waitUntilExit()
            log(process.terminationStatus == 0 ? "plot: \(png.path)" : "gnuplot failed (status \(process.terminationStatus))")
        } catch {
            log("gnuplot failed: \(error)")
        }
    }
}
