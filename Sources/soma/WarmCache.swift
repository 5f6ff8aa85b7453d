import ArgumentParser
import Foundation
import Logging
import Soma

/// `soma warm-cache`: preloads the shared cache (REDIS_URL) with the most frequent texts and the
/// profiles of the most active users, with the same configuration and runtime as `soma serve`.
struct WarmCache: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warm-cache",
        abstract: "Preload the cache: analyses of the most frequent texts in FILE and the profiles of the N most active users."
    )

    @OptionGroup var common: CommonOptions

    @Option(name: .long, help: "Profiles of this many most active users (default 0).")
    var users: Int = 0

    @Option(name: .long, help: "Texts, one per line, or JSON Lines with a \"text\" field; ranked by how often each occurs.")
    var texts: String?

    @Option(name: .long, help: "Warm at most this many distinct texts (default: all).")
    var limit: Int?

    @Option(name: .long, help: "Comma-separated modules (default: all).")
    var modules: String?

    func run() async throws {
        guard users >= 0 else { throw ValidationError("--users must not be negative") }
        let (configuration, _, _) = try common.read(common.settings()) { _ throws(Settings.Invalid) in () }
        if configuration.redisURL == nil {
            FileHandle.standardError.write(
                Data("warm-cache: REDIS_URL is not set: only this process's in-memory cache would be warmed, which ends with it\n".utf8))
            throw ExitCode(64)
        }
        var chosen = Module.allCases
        if let modules {
            chosen = try modules.split(separator: ",").map { name in
                guard let m = Module(name: String(name)) else { throw ValidationError("unknown module \(name)") }
                return m
            }
        }
        var lines: [String] = []
        if let texts {
            let data = try Data(contentsOf: URL(fileURLWithPath: texts))
            for line in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) {
                if line.first == "{", let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let text = object["text"] as? String
                {
                    lines.append(text)
                } else {
                    lines.append(String(line))
                }
            }
        }
        var ranked = CacheWarmer.rankedByFrequency(lines)
        if let limit { ranked = Array(ranked.prefix(max(0, limit))) }

        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        // The runtime alone: the same caches, store and models `soma serve` builds, without HTTP.
        let runtime = try await SomaRuntime.make(configuration: configuration, logger: Logger(label: "soma.warm"))
        let started = ContinuousClock.now
        let report = try await runtime.warmer.warm(texts: ranked, modules: chosen, users: users) { done, total in
            if done == total || done.isMultiple(of: 100) {
                FileHandle.standardError.write(Data("warm-cache: \(done)/\(total)\n".utf8))
            }
        }
        let seconds = Double((ContinuousClock.now - started).components.attoseconds) / 1e18 + Double((ContinuousClock.now - started).components.seconds)
        print(
            "warm-cache: \(report.texts) texts (\(report.entries) cache entries), \(report.users) profiles, \(report.skipped) skipped, in \(String(format: "%.1f", seconds)) s"
        )
    }
}
