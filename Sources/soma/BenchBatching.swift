import ArgumentParser
import Foundation
import Soma

/// `soma bench-batching`: what dynamic batching buys on this engine. Runs the analysis pipeline
/// over real texts with batching off and at several batch sizes, with a fixed number of concurrent
/// clients, and prints throughput and latency percentiles from the same run.
struct BenchBatching: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-batching",
        abstract: "Measure batched against sequential (unbatched) analysis throughput."
    )

    @Option(name: .long, help: "Texts to analyse per configuration.")
    var texts = 4000

    @Option(name: .long, help: "Concurrent clients submitting requests.")
    var concurrency = 64

    @Option(name: .long, help: "Comma-separated maximum batch sizes to try.")
    var batchSizes = "1,4,8,16"

    @Option(name: .long, help: "Maximum queue delay in milliseconds.")
    var delayMs = 0

    @Option(name: .long, help: "Models directory (sources or compiled).")
    var modelDir: String?

    @Option(name: .long, help: "Reference corpus directory.")
    var corpus = ReferenceCorpus.defaultDirectory.path

    func run() async throws {
        let directory = modelDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? ModelSet.defaultDirectory()
        let models = try ModelSet.load(from: directory)
        let all = try ReferenceCorpus.load(from: URL(fileURLWithPath: corpus, isDirectory: true)).documents.map(\.text)
        let inputs = (0..<texts).map { all[$0 % all.count] }
        let sizes = batchSizes.split(separator: ",").compactMap { Int($0) }
        let workers = Batcher<AnalysisPipeline.Job, AnalysisResults>.Configuration.defaultWorkers
        print("texts \(texts), clients \(concurrency), workers \(workers), max queue delay \(delayMs) ms")
        print("mode           texts/s    p50 ms    p99 ms   mean batch")
        var configs: [(String, Batcher<AnalysisPipeline.Job, AnalysisResults>.Configuration)] = [
            ("off (inline)", .init(maxBatchSize: 1, maxQueueDelay: .zero, workers: workers, enabled: false))
        ]
        for size in sizes {
            configs.append(("batch \(size)", .init(maxBatchSize: size, maxQueueDelay: .milliseconds(delayMs), workers: workers, enabled: true)))
        }
        for (name, config) in configs {
            let registry = ModelRegistry(loader: { models[$0] })
            let pipeline = AnalysisPipeline(registry: registry, batching: config)
            for m in Module.allCases { try await registry.load(m) }
            let (rate, p50, p99) = try await measure(pipeline, inputs)
            let mean = pipeline.batcher.stats().meanBatchSize
            print(name.padding(toLength: 13, withPad: " ", startingAt: 0) + String(format: "%9.0f  %8.2f  %8.2f  %11.2f", rate, p50, p99, mean))
        }
    }

    func measure(_ pipeline: AnalysisPipeline, _ inputs: [String]) async throws -> (Double, Double, Double) {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await pipeline.run() }
            let clock = ContinuousClock()
            let start = clock.now
            let latencies = try await withThrowingTaskGroup(of: [Double].self) { clients in
                for c in 0..<concurrency {
                    clients.addTask {
                        var mine: [Double] = []
                        var i = c
                        while i < inputs.count {
                            let t0 = clock.now
                            _ = try await pipeline.analyze(inputs[i], tier: Tier.allCases[i % 3])
                            let d = t0.duration(to: clock.now)
                            mine.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
                            i += concurrency
                        }
                        return mine
                    }
                }
                var all: [Double] = []
                for try await part in clients { all += part }
                return all.sorted()
            }
            let elapsed = start.duration(to: clock.now)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            group.cancelAll()
            func pct(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
            return (Double(inputs.count) / seconds, pct(0.5), pct(0.99))
        }
    }
}
