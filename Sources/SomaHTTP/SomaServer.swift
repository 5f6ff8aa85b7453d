import Foundation
public import Hummingbird
import HummingbirdCore
public import Logging
public import Prometheus
public import ServiceLifecycle
public import Soma

/// One Soma instance over HTTP: the runtime plus the Hummingbird application with its routes,
/// readiness and drain (docs/ARCHITECTURE.md §2, §7, §8).
///
/// `soma serve` runs `services` in one `ServiceGroup`; tests use `application` with
/// HummingbirdTesting (`.router` or `.live`).
public struct SomaServer: Sendable {
    public typealias App = Application<RouterResponder<SomaRequestContext>>

    public let runtime: SomaRuntime
    public let configuration: HTTPConfiguration
    public let application: App
    public let readiness: Readiness
    public let prometheus: PrometheusCollectorRegistry
    /// Turns the instance not-ready on graceful shutdown and waits `drainDelay` before the server
    /// stops accepting.
    public let drain: DrainService

    /// Histogram buckets that resolve the fast path and the SLO (docs/ARCHITECTURE.md §8).
    public static let latencyBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
    ]

    /// In start order; graceful shutdown runs them in reverse: drain first (not ready, wait), then
    /// the server (stop accepting, finish in-flight requests), then the runtime's services
    /// (maintenance, the outbox's final flush, the clients).
    public var services: [any Service] { runtime.services + [application, drain] }

    /// A metrics factory on `prometheus` with the service's latency buckets: what the process
    /// bootstraps swift-metrics with and what the runtime's metrics are made from.
    public static func metricsFactory(_ prometheus: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: prometheus)
        factory.defaultDurationHistogramBuckets = latencyBuckets
        return factory
    }

    /// The metrics every Soma instance registers, on `prometheus`.
    public static func metrics(_ prometheus: PrometheusCollectorRegistry) -> SomaMetrics {
        SomaMetrics(factory: metricsFactory(prometheus))
    }

    /// Puts the HTTP layer over `runtime`, whose metrics must be registered on `prometheus`
    /// (`SomaServer.metrics(prometheus)`).
    public static func make(
        runtime: SomaRuntime,
        configuration: HTTPConfiguration,
        prometheus: PrometheusCollectorRegistry,
        logger: Logger = Logger(label: "soma"),
        clock: any Clock<Duration> = ContinuousClock(),
        version: String = "dev"
    ) -> SomaServer {
        let metrics = runtime.metrics
        let readiness = Readiness()
        let activeUsers = ActiveUsers(clock: clock)
        let inFlight = InFlightCounter(metrics: metrics)
        let process = ProcessMetrics(registry: prometheus, stateDirectory: runtime.configuration.stateDirectory)
        let api = SomaAPI(
            configuration: configuration, runtime: runtime, readiness: readiness, activeUsers: activeUsers,
            invalidRequests: InvalidRequestGuard(configuration: .init(limit: configuration.invalidRequestsPerMinute), clock: clock),
            startedAt: .now, version: version,
            metricsText: { degraded in
                process.refresh()
                runtime.refreshGauges()
                metrics.set(SomaMetrics.Name.activeUsers, [], Double(activeUsers.count()))
                // 2 ok, 1 degraded (ready, but a dependency is served by a fallback or down, as
                // /health says), 0 not ready (starting or draining).
                metrics.set(SomaMetrics.Name.instanceStatus, [], readiness.current != .ready ? 0 : degraded ? 1 : 2)
                return prometheus.emitToBuffer()
            }
        )
        let router = Router(context: SomaRequestContext.self)
        let instanceID = runtime.configuration.instanceID
        router.add(
            middleware: RequestMiddleware(
                metrics: metrics, inFlight: inFlight, bodyLimit: configuration.maxBodyBytes, instance: instanceID,
                // One Redis timeout for the whole request, however many calls it makes.
                redisBudget: runtime.configuration.redisURL == nil ? nil : runtime.configuration.redisTimeout))
        api.register(on: router)

        let connections = ConnectionTable(metrics: metrics)
        let limits = configuration.connections
        let application = Application(
            router: router,
            server: HTTPServerBuilder { responder in
                GuardedHTTP1Channel(inner: HTTP1Channel(responder: responder), limits: limits, table: connections)
            },
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: nil, backlog: configuration.backlog,
                availableConnectionsDelegate: ConnectionCap(table: connections, maxConnections: limits.maxConnections)
            ),
            onServerRunning: { channel in
                readiness.set(.ready, port: channel.localAddress?.port)
                logger.info(
                    "soma is serving",
                    metadata: [
                        "soma.address": .string(channel.localAddress.map { "\($0)" } ?? "?"),
                        "soma.instance": .string(instanceID),
                        "soma.model_version": .string(runtime.analysis.modelVersion),
                    ])
            },
            logger: logger
        )
        if configuration.serviceToken == nil {
            logger.warning("no SOMA_SERVICE_TOKEN configured: authentication is off, callers are 'anonymous' unless they send X-User-Id")
        }
        return SomaServer(
            runtime: runtime, configuration: configuration, application: application, readiness: readiness, prometheus: prometheus,
            drain: DrainService(readiness: readiness, delay: configuration.drainDelay, logger: logger)
        )
    }
}

/// Graceful shutdown, first step: `/ready` turns 503 at once, then the server keeps serving for
/// `delay` so load balancers take the instance out before it stops accepting.
public struct DrainService: Service {
    let readiness: Readiness
    let delay: Duration
    let logger: Logger

    public func run() async throws {
        try? await gracefulShutdown()
        readiness.set(.draining)
        logger.info("draining: not ready, finishing in-flight requests", metadata: ["soma.drain_seconds": .stringConvertible(delay.components.seconds)])
        try? await Task.sleep(for: delay)
    }
}

/// The standard process metrics, read at scrape time.
final class ProcessMetrics: Sendable {
    private let cpu: Prometheus.Gauge
    private let resident: Prometheus.Gauge
    private let fds: Prometheus.Gauge
    private let start: Prometheus.Gauge
    private let disk: Prometheus.Gauge
    private let stateDirectory: URL

    init(registry: PrometheusCollectorRegistry, stateDirectory: URL) {
        cpu = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.processCPU, "CPU seconds used by the process (user + system)"))
        resident = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.processResident, "Resident memory of the process"))
        fds = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.processOpenFDs, "Open file descriptors"))
        start = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.processStart, "Process start, seconds since the epoch"))
        disk = registry.makeGauge(descriptor: Self.descriptor(SomaMetrics.Name.stateDirBytes, "Bytes used by the instance's state directory"))
        self.stateDirectory = stateDirectory
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        let cut = name.lastIndex(of: "_")!
        return MetricNameDescriptor(metricName: String(name[..<cut]), unitName: String(name[name.index(after: cut)...]), helpText: help)
    }

    func refresh() {
        if let v = ProcessStats.cpuSeconds() { cpu.set(v) }
        if let v = ProcessStats.residentBytes() { resident.set(Double(v)) }
        if let v = ProcessStats.openFileDescriptors() { fds.set(Double(v)) }
        if let v = ProcessStats.startTime() { start.set(v) }
        disk.set(Double(ProcessStats.directoryBytes(stateDirectory)))
    }
}
