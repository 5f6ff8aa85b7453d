import Foundation

/// Cache warming (`soma warm-cache`, `POST /admin/cache/warm`): the profiles of the most active
/// users and the analyses of the most frequent texts, so a fresh or restarted fleet starts warm
/// (docs/ARCHITECTURE.md §5).
public struct CacheWarmer: Sendable {
    public struct Report: Sendable, Equatable {
        public var texts = 0
        public var entries = 0
        public var skipped = 0
        public var users = 0
    }

    let service: AnalysisService
    let profiles: ProfileService
    let metrics: SomaMetrics

    public init(service: AnalysisService, profiles: ProfileService, metrics: SomaMetrics) {
        self.service = service
        self.profiles = profiles
        self.metrics = metrics
    }

    /// Ranks texts by how often they occur (most first, then first occurrence) and drops blanks.
    public static func rankedByFrequency(_ texts: [String]) -> [String] {
        var counts: [String: (count: Int, first: Int)] = [:]
        for (i, text) in texts.enumerated() where text.contains(where: { !$0.isWhitespace }) {
            counts[text, default: (0, i)].count += 1
        }
        return counts.sorted { ($0.value.count, -$0.value.first) > ($1.value.count, -$1.value.first) }.map(\.key)
    }

    /// Analyses `texts` (all `modules`) into the cache layers, then rebuilds the profiles of the
    /// `users` most active users; `progress` is told after each item.
    public func warm(
        texts: [String], modules: [Module] = Module.allCases, users: Int,
        deadline: Duration = .seconds(10),
        progress: @Sendable (_ done: Int, _ total: Int) -> Void = { _, _ in }
    ) async throws -> Report {
        var report = Report()
        let active = users > 0 ? try await profiles.mostActiveUsers(limit: users) : []
        let total = texts.count + active.count
        for text in texts {
            guard text.contains(where: { !$0.isWhitespace }) else {
                report.skipped += 1
                continue
            }
            let outcome = try await service.analyze(
                AnalysisRequest(
                    text: text, modules: modules, user: "admin:warm", tier: .free, deadline: service.now() + deadline))
            if outcome.degraded != nil {
                report.skipped += 1
            } else {
                report.texts += 1
                report.entries += modules.count
                metrics.increment(SomaMetrics.Name.cacheWarmed, [("kind", "text")])
            }
            progress(report.texts + report.skipped, total)
        }
        for user in active {
            try await profiles.rebuild(user)
            report.users += 1
            metrics.increment(SomaMetrics.Name.cacheWarmed, [("kind", "profile")])
            progress(report.texts + report.skipped + report.users, total)
        }
        return report
    }
}
