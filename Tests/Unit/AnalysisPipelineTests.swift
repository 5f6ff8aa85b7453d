import Foundation
import Soma
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct AnalysisPipelineTests {
    static let texts = [
        "I was furious because they lied to me, but I know she meant well.",
        "Tomorrow we will fly to Lisbon. I think my sister wants to stay longer.",
        "Helping others matters most to me, so I volunteer every weekend.",
        "",
        "The meeting is at 3 pm.",
    ]

    final class LoadLog: Sendable {
        let loads = Mutex<[Module]>([])
        func append(_ m: Module) { loads.withLock { $0.append(m) } }
        var all: [Module] { loads.withLock { $0 } }
    }

    func makePipeline(enabled: Bool, log: LoadLog? = nil) -> AnalysisPipeline {
        let models = Fixtures.modelSet
        let registry = ModelRegistry(loader: { module in
            log?.append(module)
            return models[module]
        })
        return AnalysisPipeline(registry: registry, batching: .init(maxBatchSize: 4, maxQueueDelay: .milliseconds(1), workers: 2, enabled: enabled))
    }

    @Test(arguments: [true, false])
    func sameResultsAsTheEngine(batching: Bool) async throws {
        let pipeline = makePipeline(enabled: batching)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await pipeline.run() }
            for text in Self.texts {
                let got = try await pipeline.analyze(text, tier: .standard)
                #expect(got == Fixtures.engine.analyze(text))
            }
            let some = try await pipeline.analyze(Self.texts[0], modules: [.values])
            #expect(some.modules == [.values])
            group.cancelAll()
        }
    }

    @Test func concurrentRequestsAcrossTiers() async throws {
        let pipeline = makePipeline(enabled: true)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await pipeline.run() }
            try await withThrowingTaskGroup(of: (Int, AnalysisResults).self) { requests in
                for i in 0..<120 {
                    requests.addTask {
                        let tier = Tier.allCases[i % 3]
                        return (i, try await pipeline.analyze(Self.texts[i % Self.texts.count], modules: [.emotion, .reasoning], tier: tier))
                    }
                }
                for try await (i, r) in requests {
                    #expect(r == Fixtures.engine.analyze(Self.texts[i % Self.texts.count], modules: [.emotion, .reasoning]))
                }
            }
            let stats = pipeline.batcher.stats()
            #expect(stats.items == 120)
            group.cancelAll()
        }
    }

    @Test func modelsLoadLazilyOnceAndUnloadWhenIdle() async throws {
        let log = LoadLog()
        let pipeline = makePipeline(enabled: false, log: log)
        _ = try await pipeline.analyze("hello there", modules: [.emotion])
        _ = try await pipeline.analyze("hello again", modules: [.emotion])
        #expect(log.all == [Module.emotion])
        let states = await pipeline.registry.states()
        #expect(states.filter { $0.loaded }.map { $0.module } == [Module.emotion])
        #expect(await pipeline.unload(.emotion))
        _ = try await pipeline.analyze("and again", modules: [.emotion])
        #expect(log.all == [Module.emotion, .emotion])
    }
}
