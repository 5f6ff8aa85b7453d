import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Soma
import SomaHTTP
import UnixSignals

/// `soma serve`: the HTTP service, on the embedded default (SQLite + in-process cache) unless
/// `DATABASE_URL` and `REDIS_URL` say otherwise.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the v1 HTTP API (settings from the environment; `soma config check` lists them)."
    )

    @OptionGroup var common: CommonOptions

    @Option(name: .long, help: "Address to bind (default 127.0.0.1).")
    var host: String?

    @Option(name: .long, help: "Port (default SOMA_PORT, then 8788; 0 picks a free one).")
    var port: Int?

    func run() async throws {
        let settings = common.settings(["SOMA_HOST": host, "SOMA_PORT": port.map(String.init)])
        let (runtimeConfiguration, http, level) = try common.read(settings) { s throws(Settings.Invalid) in try HTTPConfiguration(settings: s) }
        if let refusal = http.startupRefusal { throw ValidationError(refusal) }
        let instance = runtimeConfiguration.instanceID
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            handler.metadata["soma.instance"] = .string(instance)
            return handler
        }
        let logger = Logger(label: "soma")

        let prometheus = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(SomaServer.metricsFactory(prometheus))

        let server: SomaServer
        do {
            let runtime = try await SomaRuntime.make(configuration: runtimeConfiguration, metrics: SomaServer.metrics(prometheus), logger: logger)
            server = SomaServer.make(runtime: runtime, configuration: http, prometheus: prometheus, logger: logger, version: SomaCommand.version)
        } catch {
            logger.critical("cannot start", metadata: ["soma.error": .string("\(error)")])
            throw ExitCode.failure
        }
        let group = ServiceGroup(
            configuration: .init(
                services: server.services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        try await group.run()
        logger.info("stopped")
    }
}

/// The options every command that builds a runtime shares; each becomes a setting by its
/// variable's name, over the environment.
struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Instance id (default INSTANCE_ID, then soma-1).")
    var instanceId: String?

    @Option(name: .long, help: "State directory (default SOMA_STATE_DIR, then ./.soma/<instance id>/).")
    var stateDir: String?

    @Option(name: .long, help: "Model directory (default SOMA_MODEL_DIR, then ./Fixtures/models).")
    var modelDir: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error (default SOMA_LOG_LEVEL, then info).")
    var logLevel: String?

    /// The environment with these flags (and `more`) on top.
    func settings(_ more: [String: String?] = [:]) -> Settings {
        var flags: [String: String?] = ["INSTANCE_ID": instanceId, "SOMA_STATE_DIR": stateDir, "SOMA_MODEL_DIR": modelDir, "SOMA_LOG_LEVEL": logLevel]
        flags.merge(more) { $1 }
        return Settings(overrides: flags.compactMapValues { $0 })
    }

    /// The runtime's configuration, the front end's and the log level, or a usage error naming
    /// the first bad setting.
    func read<Front>(_ settings: Settings, front: (Settings) throws(Settings.Invalid) -> Front) throws -> (RuntimeConfiguration, Front, Logger.Level) {
        do {
            let runtime = try RuntimeConfiguration(settings: settings)
            let front = try front(settings)
            let level = try Self.logLevel(settings)
            return (runtime, front, level)
        } catch {
            throw ValidationError(error.description)
        }
    }

    static func logLevel(_ settings: Settings) throws(Settings.Invalid) -> Logger.Level {
        try settings.choice("SOMA_LOG_LEVEL", Dictionary(uniqueKeysWithValues: Logger.Level.allCases.map { ($0.rawValue, $0) })) ?? .info
    }
}
