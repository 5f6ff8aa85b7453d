import Benchmark
import BenchmarkSupport
import Foundation
import Soma

/// The serving path around the engine: concurrent analyses through `AnalysisService`, the L1
/// cache, rate-limit decisions and admission decisions.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        timeUnits: .microseconds,
        warmupIterations: 3,
        maxDuration: .seconds(1),
        maxIterations: 10_000
    )

    // 32 concurrent medium analyses per iteration through the serving path (`AnalysisService`:
    // admission in tier order on the worker slots, all five modules), the L1 cache off so every
    // request computes.
    let models = Models.served
    Benchmark(
        "service 32 concurrent medium, uncached",
        configuration: .init(metrics: [.wallClock, .mallocCountTotal, .throughput], timeUnits: .microseconds, maxDuration: .seconds(2), maxIterations: 200)
    ) { benchmark in
        let catalog = try ModelCatalog(models: models)
        let registry = ModelRegistry(loader: { try catalog.load($0) })
        for m in Module.allCases { try await registry.load(m) }
        let metrics = SomaMetrics()
        let service = AnalysisService(
            catalog: catalog, registry: registry,
            sessions: SessionManager(configuration: .init(maxInFlight: 64, maxQueued: 64)),
            cache: TieredCache(l1: L1Cache(configuration: .init(maxBytes: 0)), metrics: metrics),
            metrics: metrics)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try await withThrowingTaskGroup(of: AnalysisOutcome.self) { requests in
                for i in 0..<32 {
                    requests.addTask {
                        try await service.analyze(
                            AnalysisRequest(
                                text: Texts.medium, modules: Module.allCases, user: "u\(i)", tier: Tier.allCases[i % 3],
                                deadline: service.now() + .seconds(10)))
                    }
                }
                for try await r in requests { blackHole(r) }
            }
        }
        benchmark.stopMeasurement()
    }

    let engine = Engine(models: models)
    let result = engine.analyze(Texts.medium)
    let keys = (0..<10_000).map { CacheKey.analysis(module: .emotion, modelVersion: models.emotion.version, normalizedText: "text \($0)") }
    // Set up once, outside the measured closure (it runs once per sample).
    let warmCache = L1Cache<AnalysisResults>()
    for key in keys { _ = warmCache.set(key, result, cost: 2_000) }
    Benchmark("l1 cache get (hit)") { benchmark in
        let cache = warmCache
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(cache.get(keys[i % keys.count]))
            i &+= 1
        }
    }
    let boundedCache = L1Cache<AnalysisResults>(configuration: .init(maxBytes: 8 << 20))
    Benchmark("l1 cache put (bounded, evicting)") { benchmark in
        let cache = boundedCache
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(cache.set(keys[i % keys.count], result, cost: 2_000))
            i &+= 1
        }
    }
    Benchmark("cache key (sha-256 of a medium text)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(CacheKey.analysis(module: .emotion, modelVersion: "emotion-0", normalizedText: Texts.medium))
        }
    }

    let users = (0..<1_000).map { "user-\($0)" }
    let limiter = SlidingWindowRateLimiter()
    Benchmark("rate limiter decision") { benchmark in
        var i = 0
        for _ in benchmark.scaledIterations {
            blackHole(limiter.acquireNow(user: users[i % users.count], tier: .standard))
            i &+= 1
        }
    }

    Benchmark("admission arrive + finish") { benchmark in
        var machine = AdmissionStateMachine<Int>(configuration: .init(workers: 2))
        var now = Duration.zero
        var id = 0
        for _ in benchmark.scaledIterations {
            id &+= 1
            now += .microseconds(100)
            blackHole(machine.arrive(id: id, user: users[id % users.count], tier: Tier.allCases[id % 3], deadline: now + .seconds(1), now: now))
            blackHole(machine.finish(id: id, now: now + .microseconds(50)))
        }
    }
}
