import Benchmark
import BenchmarkSupport
import Foundation
import Soma

/// Per-module analysis at three text sizes on the served models, all modules together, the text
/// pipeline alone, FP32 against FP16, pruned against unpruned, and JSON encoding of a response.
/// Gates: scripts/bench-gate.py with Benchmarks/ceilings.json.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        timeUnits: .microseconds,
        warmupIterations: 5,
        maxDuration: .seconds(1),
        maxIterations: 2_000
    )

    let served = Engine(models: Models.served)
    let sizes: [(String, String)] = [("short", Texts.short), ("medium", Texts.medium), ("long", Texts.long)]

    for module in Module.allCases {
        for (size, text) in sizes {
            Benchmark("\(module.rawValue) \(size)") { benchmark in
                for _ in benchmark.scaledIterations {
                    blackHole(served.analyze(text, modules: [module]))
                }
            }
        }
    }

    for (size, text) in sizes {
        Benchmark("all modules \(size)") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(served.analyze(text))
            }
        }
    }

    let pipeline = TextPipeline()
    let bytes = Texts.long.utf8.count
    Benchmark("text pipeline long (\(bytes) bytes)", configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal], timeUnits: .microseconds)) {
        benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(pipeline.process(Texts.long))
        }
    }

    let variants: [(String, ModelSet)] = [
        ("fp32 unpruned", Models.fp32), ("fp16 unpruned", Models.fp16),
        ("fp32 pruned", Models.prunedFP32), ("fp16 pruned", Models.served),
    ]
    for (name, models) in variants {
        let engine = Engine(models: models)
        Benchmark("all modules medium, \(name)") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(engine.analyze(Texts.medium))
            }
        }
    }

    let response = served.analyze(Texts.medium)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    Benchmark("json encode full response (medium), JSONEncoder") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try encoder.encode(response))
        }
    }
    Benchmark("json encode full response (medium), JSONWriter") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(response.json())
        }
    }
}
