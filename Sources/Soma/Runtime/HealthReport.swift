import Foundation

/// The instance's dependencies as they are now: what `/health` reports and what
/// `soma_instance_status` is computed from (docs/ARCHITECTURE.md §5).
public struct HealthReport: Sendable {
    /// One dependency's state.
    public struct Dependency: Sendable, Equatable {
        public enum State: String, Sendable {
            case up, down
            /// Not available, and a local fallback serves in its place.
            case fallback
        }

        /// The name it is reported under (`store`, `outbox`, `cache`, `redis`, `fallback_cache`).
        public var name: String
        /// What it is (`sqlite`, `postgres`, `memory`, `redis`).
        public var kind: String
        public var state: State
        /// Entries waiting (the outbox only).
        public var pending: Int?
        /// Entries queued for another database, kept and not replayed (the outbox only).
        public var held: Int?
        /// Age of the oldest waiting entry (the outbox only).
        public var oldestPendingAge: Duration?
        /// Why it is not up, for operators (never a secret).
        public var detail: String?
    }

    public var storeKind: StoreKind
    /// In report order: store, outbox (PostgreSQL only), cache, redis and fallback_cache (with Redis
    /// only).
    public var dependencies: [Dependency]

    /// Degraded when any dependency is not up, or the outbox holds entries for another database
    /// (they need an operator).
    public var degraded: Bool { dependencies.contains { $0.state != .up || ($0.held ?? 0) > 0 } }

    public subscript(name: String) -> Dependency? { dependencies.first { $0.name == name } }
}

extension SomaRuntime {
    /// Probes every dependency: the store with a round trip (through its breaker when remote,
    /// given up on after a quarter of the database timeout: `/health` and every `/metrics` scrape
    /// wait for it, and a hung database must not hold them), the outbox with a committed write,
    /// Redis as its breaker sees it, the fallback cache with a read.
    public func health() async -> HealthReport {
        var dependencies: [HealthReport.Dependency] = []
        let probeBound = ContinuousClock.now + max(.milliseconds(100), configuration.databaseTimeout / 4)
        let storeUp = await CallDeadline.within(probeBound) { await store.isHealthy() }
        switch storage {
        case .embedded:
            dependencies.append(.init(name: "store", kind: StoreKind.sqlite.rawValue, state: storeUp ? .up : .down))
        case .remote(_, let outbox):
            let probe = outbox.probe()
            // With PostgreSQL down, writes go to the outbox: the store is served by its fallback
            // only while the outbox can write.
            let storeState: HealthReport.Dependency.State = storeUp ? .up : probe.writable ? .fallback : .down
            dependencies.append(.init(name: "store", kind: StoreKind.postgres.rawValue, state: storeState))
            dependencies.append(
                .init(
                    name: "outbox", kind: "sqlite", state: probe.writable ? .up : .down, pending: probe.pending, held: probe.held,
                    oldestPendingAge: probe.oldestPendingAge, detail: probe.problem))
        }
        // L1 is this process's memory: it is up while the process is.
        dependencies.append(.init(name: "cache", kind: "memory", state: .up))
        if cache.remote != nil {
            dependencies.append(.init(name: "redis", kind: "redis", state: cache.remoteHealthy ? .up : .fallback))
        }
        if let fallback = cache.fallback {
            // The local file that serves while Redis is down: probed with a real read, so a broken
            // fallback shows before Redis fails, not after.
            let readable = (try? await fallback.get([CacheKey.user("soma:health", "probe")])) != nil
            dependencies.append(
                .init(
                    name: "fallback_cache", kind: "sqlite", state: readable ? .up : .down,
                    detail: readable ? nil : "the local fallback cache cannot be read"))
        }
        return HealthReport(storeKind: storage.kind, dependencies: dependencies)
    }
}
