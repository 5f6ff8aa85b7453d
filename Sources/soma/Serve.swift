import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals
import Soma
import SomaHTTP

/// `soma serve`: the HTTP service on the embedded default (SQLite + in-process cache).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the v1 HTTP API (environment: SOMA_PORT, INSTANCE_ID, SOMA_STATE_DIR, SOMA_SQLITE_PATH, SOMA_SERVICE_TOKEN, SOMA_ADMIN_TOKEN, SOMA_MODEL_DIR, limits; see README)."
    )

    @Option(name: .long, help: "Address to bind (default 127.0.0.1).")
    var host: String?

    @Option(name: .long, help: "Port (default SOMA_PORT, then 8788; 0 picks a free one).")
    var port: Int?

    @Option(name: .long, help: "Instance id (default INSTANCE_ID, then soma-1).")
    var instanceId: String?

    @Option(name: .long, help: "State directory (default SOMA_STATE_DIR, then ./.soma/<instance id>/).")
    var stateDir: String?

    @Option(name: .long, help: "Model directory (default SOMA_MODEL_DIR, then ./Fixtures/models).")
    var modelDir: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error (default SOMA_LOG_LEVEL, then info).")
    var logLevel: String?

    func run() async throws {
        var environment = ProcessInfo.processInfo.environment
        if let instanceId { environment["INSTANCE_ID"] = instanceId }
        if let stateDir { environment["SOMA_STATE_DIR"] = stateDir }
        if let modelDir { environment["SOMA_MODEL_DIR"] = modelDir }
        var configuration: ServerConfiguration
        do { configuration = try ServerConfiguration.fromEnvironment(environment) } catch {
            throw ValidationError("\(error)")
        }
        if let host { configuration.host = host }
        if let port { configuration.port = port }

        let levelName = logLevel ?? environment["SOMA_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: levelName.lowercased()) else {
            throw ValidationError("unknown log level \(levelName)")
        }
        let instance = configuration.instanceID
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            handler.metadata["soma.instance"] = .string(instance)
            return handler
        }
        let logger = Logger(label: "soma")

        let prometheus = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: prometheus)
        factory.defaultDurationHistogramBuckets = SomaServer.latencyBuckets
        MetricsSystem.bootstrap(factory)

        let server: SomaServer
        do {
            server = try await SomaServer.make(configuration: configuration, logger: logger, prometheus: prometheus, version: SomaCommand.version)
        } catch {
            logger.critical("cannot start", metadata: ["soma.error": .string("\(error)")])
            throw ExitCode.failure
        }
        let group = ServiceGroup(configuration: .init(
            services: server.services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
        logger.info("stopped")
    }
}
