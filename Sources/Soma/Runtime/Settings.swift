import Configuration
public import Foundation
import Synchronization

/// Where every setting of a Soma process is read: the environment (or an env file), with flags on
/// top. `RuntimeConfiguration`, the HTTP layer's configuration and the CLI all read through one
/// `Settings`, so a variable is parsed in one place and `soma config check` validates a
/// deployment's settings with the very parser that `soma serve` uses (docs/ARCHITECTURE.md §6).
///
/// Look-ups go through swift-configuration (`EnvironmentVariablesProvider` for the environment and
/// `.env` files, an `InMemoryProvider` for flags, which win); typed parsing stays here because a
/// value that is present but wrong must be an error, not a silent default.
public final class Settings: Sendable {
    /// A setting that is present and wrong.
    public struct Invalid: Error, CustomStringConvertible, Sendable, Equatable {
        public var name: String
        public var value: String
        public var expected: String
        public var description: String { "invalid value for \(name): \(value) (expected \(expected))" }
    }

    /// Variables whose values are never printed (they may hold passwords or tokens).
    public static let secrets: Set<String> = ["SOMA_SERVICE_TOKEN", "SOMA_ADMIN_TOKEN", "DATABASE_URL", "REDIS_URL"]

    private let reader: ConfigReader
    private let present: Set<String>
    private let asked = Mutex<Set<String>>([])

    /// - Parameters:
    ///   - environment: the variables (the process environment by default).
    ///   - overrides: values given as flags, by variable name; they take precedence.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment, overrides: [String: String] = [:]) {
        let env = EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .specific(Self.secrets))
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (name, value) in overrides {
            values[AbsoluteConfigKey(Self.key(name).components)] = ConfigValue(.string(value), isSecret: Self.secrets.contains(name))
        }
        reader = ConfigReader(providers: [InMemoryProvider(name: "flags", values: values), env])
        present = Set(environment.keys).union(overrides.keys)
    }

    /// Reads an env file (`NAME=value` lines, `#` comments, optional quotes) over `environment`, as
    /// a container runtime would pass it. Parsed here rather than by the package's file-backed
    /// provider because `config check` needs the names present, to report unknown ones.
    public static func load(environmentFile path: String, over environment: [String: String] = [:]) throws -> Settings {
        var merged = environment
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw Invalid(name: "--env-file", value: path, expected: "a readable file")
        }
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty, !line.hasPrefix("#"), let eq = line.firstIndex(of: "=") else { continue }
            var name = String(line[..<eq]).trimmingCharacters(in: .whitespaces)
            if name.hasPrefix("export ") { name = String(name.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            var value = String(line[line.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let q = value.first, q == "\"" || q == "'", value.last == q { value = String(value.dropFirst().dropLast()) }
            merged[name] = value
        }
        return Settings(environment: merged)
    }

    /// `SOMA_DB_POOL` → `soma.db.pool`, which the environment provider maps back to `SOMA_DB_POOL`.
    private static func key(_ name: String) -> ConfigKey {
        ConfigKey(name.lowercased().split(separator: "_").map(String.init))
    }

    /// The trimmed value, `nil` when unset or blank.
    public func string(_ name: String) -> String? {
        asked.withLock { _ = $0.insert(name) }
        guard let v = reader.string(forKey: Self.key(name), isSecret: Self.secrets.contains(name))?.trimmingCharacters(in: .whitespaces),
            !v.isEmpty
        else { return nil }
        return v
    }

    /// An integer from `min` to `max`, `nil` when unset.
    public func int(_ name: String, min: Int = 0, max: Int = .max) throws(Invalid) -> Int? {
        guard let raw = string(name) else { return nil }
        guard let n = Int(raw), n >= min, n <= max else {
            throw Invalid(name: name, value: raw, expected: max == .max ? "an integer ≥ \(min)" : "an integer from \(min) to \(max)")
        }
        return n
    }

    /// Milliseconds of at least `min`, as a duration.
    public func milliseconds(_ name: String, min: Int = 1) throws(Invalid) -> Duration? {
        try int(name, min: min).map { .milliseconds($0) }
    }

    /// Seconds of at least `min`, as a duration.
    public func seconds(_ name: String, min: Int = 1) throws(Invalid) -> Duration? {
        try int(name, min: min).map { .seconds($0) }
    }

    /// `1`/`true`/`yes` or `0`/`false`/`no`, `nil` when unset.
    public func bool(_ name: String) throws(Invalid) -> Bool? {
        try choice(name, ["1": true, "true": true, "yes": true, "0": false, "false": false, "no": false])
    }

    /// A secret (a token): `nil` when the variable is absent; present but empty or only white
    /// space is an error, never "no token" (which would quietly turn authentication off).
    public func token(_ name: String) throws(Invalid) -> String? {
        if let value = string(name) { return value }
        guard present.contains(name) else { return nil }
        throw Invalid(name: name, value: "<blank>", expected: "a non-blank token, or the variable left unset")
    }

    /// One of `choices` (case-insensitive), `nil` when unset.
    public func choice<T>(_ name: String, _ choices: [String: T]) throws(Invalid) -> T? {
        guard let raw = string(name) else { return nil }
        guard let chosen = choices[raw.lowercased()] else {
            throw Invalid(name: name, value: raw, expected: "one of " + choices.keys.sorted().joined(separator: ", "))
        }
        return chosen
    }

    /// Variables present that look like Soma's (`SOMA_*`) but no parser asked for: most often a
    /// typo. Meaningful after every configuration was read.
    public var unknownNames: [String] {
        let asked = asked.withLock { $0 }
        return present.filter { $0.hasPrefix("SOMA_") && !asked.contains($0) && !Self.ignored.contains($0) }.sorted()
    }

    /// `SOMA_*` variables that belong to the tools around the service, not to `soma` itself.
    static let ignored: Set<String> = ["SOMA_STACK_DIR", "SOMA_STACK_PORT", "SOMA_SLOWDOWN", "SOMA_SLOWDOWN_HOLD_MS", "SOMA_BIN", "SOMA_IMAGE"]

    /// For printing: the value, or `<redacted>` for a secret.
    public static func display(_ name: String, _ value: String) -> String {
        secrets.contains(name) ? "<redacted>" : value
    }
}
