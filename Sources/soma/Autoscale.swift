import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import Soma
import SomaHTTP
import Subprocess
import Synchronization
import SystemPackage
import UnixSignals

/// `soma autoscale`: the brief's scaling policy and a supervisor over the local stack
/// (`scripts/stack.py`) or the compose stack (`scripts/compose.py`), reading CPU from the stack's
/// Prometheus (docs/OPERATIONS.md, "Autoscaling").
struct Autoscale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Scale the local or compose stack by CPU (2–10 instances) and replace instances that die or stop answering."
    )

    enum StackKind: String, ExpressibleByArgument, CaseIterable {
        case local, compose
    }

    @Option(help: "Which stack: local (scripts/stack.py) or compose (scripts/compose.py).")
    var stack: StackKind = .local

    @Option(help: "The stack's control script (default scripts/stack.py or scripts/compose.py under the working directory).")
    var script: String?

    @Option(help: "Prometheus base URL (default: the one the stack reports).")
    var prometheus: String?

    @Option(name: .customLong("min"), help: "Fewest instances.")
    var minInstances = 2

    @Option(name: .customLong("max"), help: "Most instances.")
    var maxInstances = 10

    @Option(help: "Scale up when mean CPU utilisation stays above this fraction…")
    var upAbove = 0.70

    @Option(help: "…for this many seconds.")
    var upAfter = 300.0

    @Option(help: "Scale down when mean CPU utilisation stays below this fraction…")
    var downBelow = 0.30

    @Option(help: "…for this many seconds.")
    var downAfter = 600.0

    @Option(help: "Seconds after a change of the count before a window may start.")
    var cooldown = 60.0

    @Option(help: "Seconds between policy evaluations.")
    var interval = 10.0

    @Option(help: "Seconds between readiness rounds of the supervisor.")
    var superviseInterval = 10.0

    @Option(help: "Failed /ready probes in a row that replace an instance (a refused connection replaces it at once).")
    var failuresBeforeReplace = 3

    @Option(help: "Range of the CPU rate() in seconds (at least two scrapes).")
    var cpuRange = 30.0

    @Option(help: "CPU cores one instance is budgeted (utilisation 1.0 is all of them).")
    var coresPerInstance = 1.0

    @Option(help: "host:port of this process's /metrics (default: the address the stack's Prometheus scrapes; 'off' for none).")
    var metricsAddress: String?

    @Option(help: "Append every event to this file, one JSON object per line.")
    var eventsFile: String?

    @Option(help: "Log level (default info).")
    var logLevel: String = "info"

    func validate() throws {
        guard minInstances >= 1, maxInstances >= minInstances else { throw ValidationError("need 1 <= --min <= --max") }
        guard downBelow >= 0, downBelow < upAbove else { throw ValidationError("need 0 <= --down-below < --up-above") }
        guard upAfter >= 0, downAfter >= 0, cooldown >= 0 else { throw ValidationError("windows must not be negative") }
        guard interval > 0, superviseInterval > 0, cpuRange >= 1, coresPerInstance > 0, failuresBeforeReplace >= 1 else {
            throw ValidationError("intervals, --cpu-range, --cores-per-instance and --failures-before-replace must be positive")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown log level \(logLevel)") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "soma.autoscale")
        let prometheusRegistry = PrometheusCollectorRegistry()
        let metrics = SomaServer.metrics(prometheusRegistry)

        let control = ScriptStack(
            script: script ?? FileManager.default.currentDirectoryPath + (stack == .local ? "/scripts/stack.py" : "/scripts/compose.py"))
        let described = try await control.describe()
        guard let prometheusURL = prometheus ?? described.prometheus else {
            throw ValidationError("the stack reports no Prometheus; pass --prometheus")
        }
        let query = PrometheusCPUQuery(range: .seconds(cpuRange), coresPerInstance: coresPerInstance)
        let events = try EventLog(path: eventsFile)

        let policy = ScalingConfiguration(
            minInstances: minInstances, maxInstances: maxInstances, scaleUpAbove: upAbove, scaleUpAfter: .seconds(upAfter),
            scaleDownBelow: downBelow, scaleDownAfter: .seconds(downAfter), cooldown: .seconds(cooldown),
            maximumSampleGap: .seconds(max(3 * interval, 2 * cpuRange)))
        let autoscaler = Autoscaler(
            stack: control, cpu: PrometheusCPU(base: prometheusURL, query: query), readiness: HTTPReadiness(), policy: policy,
            failuresBeforeReplace: failuresBeforeReplace,
            timing: .init(interval: .seconds(interval), superviseInterval: .seconds(superviseInterval)),
            clock: ContinuousClock(), metrics: metrics, logger: logger, events: { events.write($0) })
        logger.info(
            "autoscaling",
            metadata: [
                "soma.stack": .string(stack.rawValue), "soma.prometheus": .string(prometheusURL),
                "soma.instances": .stringConvertible(described.instances.count), "soma.policy": .string("\(policy)"),
            ])

        var services: [any Service] = [autoscaler]
        let address = metricsAddress ?? described.autoscaleMetrics ?? "127.0.0.1:9465"
        if address != "off" {
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
                throw ValidationError("--metrics-address must be host:port")
            }
            let router = Router()
            router.get("/metrics") { _, _ in
                Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: prometheusRegistry.emitToBuffer())))
            }
            router.get("/health") { _, _ in "ok\n" }
            services.append(Application(router: router, configuration: .init(address: .hostname(String(address[..<colon]), port: port)), logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

// MARK: - The stack, through its control script

/// The stack behind its control script: `instances --json`, `scale --instances N`, `replace ID`
/// (scripts/stack.py and scripts/compose.py share these subcommands).
struct ScriptStack: ScalableStack {
    struct Description: Decodable {
        var instances: [StackInstance]
        var prometheus: String?
        var autoscaleMetrics: String?

        enum CodingKeys: String, CodingKey {
            case instances, prometheus
            case autoscaleMetrics = "autoscale_metrics"
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let script: String

    func describe() async throws -> Description {
        let output = try await invoke(["instances", "--json"])
        do {
            return try JSONDecoder().decode(Description.self, from: Data(output.utf8))
        } catch {
            throw Failure(description: "\(script) instances --json printed something else: \(output.prefix(300))")
        }
    }

    func instances() async throws -> [StackInstance] { try await describe().instances }

    func scale(to count: Int) async throws { _ = try await invoke(["scale", "--instances", String(count)]) }

    func replace(_ instance: StackInstance) async throws { _ = try await invoke(["replace", instance.id]) }

    /// Runs the script with python3 and this process's environment; its stdout, or a failure with
    /// the end of its stderr.
    private func invoke(_ arguments: [String]) async throws -> String {
        let result = try await Subprocess.run(
            .name("python3"), arguments: Arguments([script] + arguments),
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        guard case .exited(0) = result.terminationStatus else {
            let errors = result.standardError
            throw Failure(description: "\(script) \(arguments.joined(separator: " ")) failed (\(result.terminationStatus)): \(errors.suffix(1500))")
        }
        return result.standardOutput
    }
}

// MARK: - CPU and readiness over HTTP

struct PrometheusCPU: CPUSource {
    let base: String
    let query: PrometheusCPUQuery

    func utilisation() async throws -> [String: Double] {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + query.path), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 4 << 20)
        guard response.status == .ok else {
            throw PrometheusCPUQuery.Failure(description: "Prometheus answered \(response.status.code): \(String(buffer: body).prefix(300))")
        }
        return try query.utilisation(from: Data(body.readableBytesView))
    }
}

/// `/ready` of one instance, answered within two seconds.
struct HTTPReadiness: ReadinessProbe {
    func probe(_ instance: StackInstance) async -> SupervisionPolicy.Probe {
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: instance.url + "/ready"), timeout: .seconds(2))
            _ = try? await response.body.collect(upTo: 1 << 16)
            return response.status == .ok ? .ready : .failing("/ready answered \(response.status.code)")
        } catch {
            return Self.refused(error) ? .unreachable("connection refused") : .failing("\(error)")
        }
    }

    /// Whether `error` is a refused connection (nothing listens), however NIO wrapped it.
    static func refused(_ error: any Error) -> Bool {
        if let io = error as? IOError { return io.errnoCode == ECONNREFUSED }
        if let connection = error as? NIOConnectionError { return connection.connectionErrors.contains { refused($0.error) } }
        return false
    }
}

// MARK: - The events file

/// One JSON object per line per ``AutoscaleEvent``, with the wall-clock time (the demo's timeline).
final class EventLog: Sendable {
    private let handle: Mutex<FileHandle?>

    init(path: String?) throws {
        guard let path else {
            handle = Mutex(nil)
            return
        }
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let file = FileHandle(forWritingAtPath: path) else { throw ValidationError("cannot write \(path)") }
        file.seekToEndOfFile()
        handle = Mutex(file)
    }

    func write(_ event: AutoscaleEvent) {
        var record: [String: Any] = ["time": Date().timeIntervalSince1970]
        switch event {
        case .observed(let instances, let cpu, let reason, let window):
            record.merge(["event": "observed", "instances": instances, "reason": reason]) { $1 }
            if let cpu { record["cpu"] = cpu }
            if let window { record["window_seconds"] = window }
        case .scaled(let from, let to, let reason, let cpu, let seconds):
            record.merge(["event": "scaled", "from": from, "to": to, "reason": reason, "seconds": seconds]) { $1 }
            if let cpu { record["cpu"] = cpu }
        case .replaced(let instance, let probe, let seconds):
            record.merge(["event": "replaced", "instance": instance, "probe": probe, "seconds": seconds]) { $1 }
        case .failed(let action, let error):
            record.merge(["event": "failed", "action": action, "error": error]) { $1 }
        }
        guard let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { return }
        handle.withLock { file in
            file?.write(data + Data("\n".utf8))
        }
    }
}
