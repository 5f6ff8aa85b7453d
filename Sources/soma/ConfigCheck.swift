import ArgumentParser
import Foundation
import Soma
import SomaHTTP

/// `soma config check [--env-file F]`: validates a deployment's settings with the parser `soma
/// serve` uses, prints the effective configuration (secrets redacted) and fails on a bad value or
/// an unknown `SOMA_*` name (most often a typo that would silently leave a default in force).
struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with the service's settings.", subcommands: [Check.self])

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate settings (the environment, or an env file as a container would get it) and print the effective configuration.")

        @Option(name: .long, help: "Read NAME=value lines from this file instead of the environment.")
        var envFile: String?

        func run() async throws {
            let settings: Settings
            do { settings = try envFile.map { try Settings.load(environmentFile: $0) } ?? Settings() } catch {
                throw ValidationError("\(error)")
            }
            let runtime: RuntimeConfiguration
            let http: HTTPConfiguration
            do {
                runtime = try RuntimeConfiguration(settings: settings)
                http = try HTTPConfiguration(settings: settings)
                _ = try CommonOptions.logLevel(settings)
            } catch {
                print("config: \(error.description)")
                throw ExitCode.failure
            }
            if let refusal = http.startupRefusal {
                print("config: \(refusal)")
                throw ExitCode.failure
            }
            let unknown = settings.unknownNames
            let rows: [(String, String)] = [
                ("instance", runtime.instanceID),
                ("listen", "\(http.host):\(http.port) (backlog \(http.backlog))"),
                ("state directory", runtime.stateDirectory.path),
                ("models", "\(runtime.modelDirectory.path) (\(runtime.modelPrecision?.rawValue ?? "file precision"))"),
                (
                    "store",
                    runtime.storeKind == .sqlite
                        ? "sqlite at \(runtime.resolvedSQLitePath)" : "postgres \(redacted(runtime.databaseURL)) (pool \(runtime.databasePoolSize))"
                ),
                (
                    "cache",
                    "memory \(runtime.cacheBytes >> 20) MiB"
                        + (runtime.redisURL.map { _ in ", redis \(redacted(runtime.redisURL)) (pool \(runtime.redisPoolSize))" } ?? "")
                ),
                ("auth", "service token \(http.serviceToken == nil ? "off" : "set"), admin token \(http.adminToken == nil ? "off (admin refused)" : "set")"),
                ("admission", "\(runtime.admission.workers) workers, \(runtime.admission.maxInFlight) in flight, \(runtime.admission.maxQueued) queued"),
                ("deadline", "\(http.defaultDeadline) default, \(http.maxDeadline) max"),
                (
                    "connections",
                    "at most \(http.connections.maxConnections); header \(http.connections.headerTimeout), body \(http.connections.bodyTimeout), "
                        + "idle \(http.connections.idleTimeout)"
                ),
                ("invalid requests", "\(http.invalidRequestsPerMinute) per user per minute, then 429"),
                ("cache scope", runtime.cacheScope.rawValue),
            ]
            for (name, value) in rows { print("config: \(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(value)") }
            guard unknown.isEmpty else {
                print("config: unknown settings (typos?): \(unknown.joined(separator: ", "))")
                throw ExitCode.failure
            }
            print("config: ok")
        }

        /// A URL with any password replaced.
        private func redacted(_ url: String?) -> String {
            guard let url, let at = url.lastIndex(of: "@"), let scheme = url.range(of: "://") else { return url ?? "" }
            let credentials = url[scheme.upperBound..<at]
            guard let colon = credentials.firstIndex(of: ":") else { return url }
            return String(url[..<colon]) + ":***" + String(url[at...])
        }
    }
}
