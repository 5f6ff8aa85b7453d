public import CoreMetrics
import Synchronization

/// Every metric Soma emits, by its stable name (docs/ARCHITECTURE.md §8), through the swift-metrics API.
///
/// Handles are made once per label set and cached, so the hot path costs a dictionary lookup
/// under a lock, not a factory call. Each name has exactly one set of label names. Which backend
/// receives them is the factory's business: the executable passes a `PrometheusMetricsFactory`,
/// tests a `TestMetrics`.
public final class SomaMetrics: Sendable {
    /// Metric names, one place for code, dashboards and alerts to agree on.
    public enum Name {
        public static let httpRequests = "soma_http_requests_total"
        public static let httpDuration = "soma_http_request_duration_seconds"
        public static let inFlight = "soma_http_requests_in_flight"
        public static let moduleDuration = "soma_module_duration_seconds"
        public static let cacheRequests = "soma_cache_requests_total"
        public static let cacheBytes = "soma_cache_bytes"
        public static let cacheWarmed = "soma_cache_warmed_total"
        public static let cacheEntries = "soma_cache_entries"
        public static let queueDepth = "soma_queue_depth"
        public static let rateLimited = "soma_rate_limited_total"
        public static let rateLimitFallback = "soma_rate_limit_fallback_total"
        public static let circuitState = "soma_circuit_state"
        public static let circuitTransitions = "soma_circuit_transitions_total"
        public static let shed = "soma_shed_total"
        public static let degraded = "soma_degraded_total"
        public static let modelLoaded = "soma_model_loaded"
        public static let modelBytes = "soma_model_bytes"
        public static let modelAccuracy = "soma_model_accuracy"
        public static let modelLoads = "soma_model_loads_total"
        public static let activeUsers = "soma_active_users"
        public static let instanceStatus = "soma_instance_status"
        public static let stateDirBytes = "soma_state_dir_bytes"
        public static let entriesWritten = "soma_entries_written_total"
        public static let outboxPending = "soma_outbox_pending"
        public static let outboxHeld = "soma_outbox_held"
        public static let dbConnections = "soma_db_connections"
        public static let connectionsOpen = "soma_connections_open"
        public static let connectionsClosed = "soma_connections_closed_total"
        public static let invalidRefused = "soma_invalid_requests_refused_total"
        public static let autoscaleDesired = "soma_autoscale_desired_instances"
        public static let autoscaleInstances = "soma_autoscale_instances"
        public static let autoscaleMinInstances = "soma_autoscale_min_instances"
        public static let autoscaleMaxInstances = "soma_autoscale_max_instances"
        public static let autoscaleCPU = "soma_autoscale_cpu_utilisation"
        public static let autoscaleDecisions = "soma_autoscale_decisions_total"
        public static let autoscaleScaleSeconds = "soma_autoscale_last_scale_seconds"
        public static let autoscaleReplacements = "soma_autoscale_replacements_total"
        public static let autoscaleFailures = "soma_autoscale_failures_total"
        public static let processCPU = "process_cpu_seconds_total"
        public static let processResident = "process_resident_memory_bytes"
        public static let processOpenFDs = "process_open_fds"
        public static let processStart = "process_start_time_seconds"
    }

    private struct Key: Hashable {
        var name: String
        var labels: [String]
    }

    private struct Handles {
        var counters: [Key: Counter] = [:]
        var timers: [Key: Timer] = [:]
        var gauges: [Key: Gauge] = [:]
    }

    private let factory: any MetricsFactory
    private let handles = Mutex(Handles())

    /// - Parameter factory: where metrics go; by default the bootstrapped global system.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
    }

    // MARK: Generic

    /// Adds `by` to counter `name` with the given labels.
    public func increment(_ name: String, _ labels: [(String, String)] = [], by amount: Int = 1) {
        counter(name, labels).increment(by: Int64(amount))
    }

    /// Records a duration into histogram `name`.
    public func record(_ name: String, _ labels: [(String, String)] = [], duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        timer(name, labels).recordNanoseconds(nanoseconds)
    }

    /// Sets gauge `name` to `value`.
    public func set(_ name: String, _ labels: [(String, String)] = [], _ value: Double) {
        gauge(name, labels).record(value)
    }

    // MARK: Named helpers used on the serving path

    public func http(route: String, method: String, status: Int, duration: Duration) {
        let labels = [("route", route), ("method", method), ("status", String(status))]
        increment(Name.httpRequests, labels)
        record(Name.httpDuration, labels, duration: duration)
    }

    public func module(_ module: Module, duration: Duration) {
        record(Name.moduleDuration, [("module", module.rawValue)], duration: duration)
    }

    /// One module lookup in a cache layer (`l1`, `l2`, `fallback`): `hit` or `miss`.
    public func cache(layer: String, hit: Bool) {
        increment(Name.cacheRequests, [("layer", layer), ("result", hit ? "hit" : "miss")])
    }

    public func degraded(reason: String) {
        increment(Name.degraded, [("reason", reason)])
    }

    public func shed(tier: Tier) {
        increment(Name.shed, [("tier", tier.rawValue)])
    }

    public func rateLimited(tier: Tier) {
        increment(Name.rateLimited, [("tier", tier.rawValue)])
    }

    public func queueDepth(tier: Tier, _ depth: Int) {
        set(Name.queueDepth, [("tier", tier.rawValue)], Double(depth))
    }

    // MARK: Handles

    private func counter(_ name: String, _ labels: [(String, String)]) -> Counter {
        handle(\.counters, name, labels) { Counter(label: name, dimensions: labels, factory: factory) }
    }

    private func timer(_ name: String, _ labels: [(String, String)]) -> Timer {
        handle(\.timers, name, labels) { Timer(label: name, dimensions: labels, factory: factory) }
    }

    private func gauge(_ name: String, _ labels: [(String, String)]) -> Gauge {
        handle(\.gauges, name, labels) { Gauge(label: name, dimensions: labels, factory: factory) }
    }

    /// The cached handle for (name, labels), made outside the lock on first use.
    private func handle<H: Sendable>(
        _ table: WritableKeyPath<Handles, [Key: H]>,
        _ name: String,
        _ labels: [(String, String)],
        make: () -> H
    ) -> H {
        let key = Key(name: name, labels: labels.flatMap { [$0.0, $0.1] })
        if let found = handles.withLock({ $0[keyPath: table][key] }) { return found }
        let made = make()
        return handles.withLock { h in
            if let raced = h[keyPath: table][key] { return raced }
            h[keyPath: table][key] = made
            return made
        }
    }
}
