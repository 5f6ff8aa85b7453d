import ArgumentParser
import Foundation
import SomaLoad

/// `soma-load`: the load harness (docs/PERFORMANCE.md, "Load") and the write audit of the chaos
/// suite (docs/RELIABILITY.md).
@main
struct SomaLoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soma-load",
        abstract: "Open-loop load against a Soma gateway or instance, and the audit of the entries it wrote.",
        subcommands: [RunLoad.self, AuditWrites.self],
        defaultSubcommand: RunLoad.self
    )
}

/// `soma-load [run]`. Exit code: 0 the brief's SLO held, 1 it did not, 3 the run is invalid (the
/// generator was the limit).
struct RunLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Open-loop load against a Soma gateway or instance; HdrHistogram percentiles, an SLO verdict, plots."
    )

    @Option(help: "Base URL of the target (a gateway or one instance).")
    var url: String = "http://127.0.0.1:8788"
    @Option(help: "A stack's state file (.stack/stack.json or .compose/compose.json): its instances' /metrics are read, and its service token used.")
    var stackState: String?
    @Option(name: .customLong("instance"), help: "An instance URL whose /metrics to read (repeatable).")
    var instances: [String] = []
    @Option(help: "JSON Lines ({\"text\": ...}) or plain text, one text per line.")
    var corpus: String
    @Option(help: "Virtual users, each with its own keep-alive connection.") var users = 1000
    @Option(help: "Requests per user per minute.") var perUserPerMinute = 10.0
    @Option(help: "A fixed total arrival rate (requests a second) instead of the per-user schedule.") var rate: Double?
    @Option(help: "Seconds of ramp-up.") var rampUp = 30.0
    @Option(help: "Seconds of warm-up after the ramp (not counted).") var warmUp = 30.0
    @Option(help: "Seconds measured.") var duration = 300.0
    @Option(help: "Route weights, e.g. analyze=50,module=15,batch=5,entryWrite=10,entryList=10,profile=10.") var mix: String?
    @Option(help: "Tier weights, e.g. premium=10,standard=60,free=30 (each user keeps one tier).") var tiers: String?
    @Option(help: "Share of analysis requests on a text never seen before.") var newTexts = 0.2
    @Option(help: "Zipf exponent over the corpus order.") var zipf = 1.0
    @Option(help: "Random seed (the same seed sends the same requests).") var seed: UInt64 = 20_261_206
    @Option(help: "Service token (default: SOMA_SERVICE_TOKEN, else the stack's).") var token: String?
    @Option(help: "Where report.json, series.csv and latency.png go.") var out = ".build/load"
    @Option(help: "Capacity mode: step the rate up from this, by --step, until p99 passes --p99-bound or errors appear.") var capacityFrom: Double?
    @Option(help: "Capacity mode: rate multiplier per step.") var step = 1.5
    @Option(help: "Capacity mode: seconds per step.") var stepSeconds = 20.0
    @Option(help: "Capacity mode: the p99 bound, ms.") var p99Bound = 25.0
    @Option(help: "Capacity mode: the highest rate tried.") var capacityMax = 20_000.0
    @Option(help: "Record every entry write and its answer (entry id, status, instance, times) here, as JSON Lines, for `soma-load audit-writes`.")
    var ledger: String?

    func run() async throws {
        let corpus = try Corpus(path: corpus, exponent: zipf)
        var instances = instances
        var token = token ?? ProcessInfo.processInfo.environment["SOMA_SERVICE_TOKEN"]
        if let stackState {
            let stack = try stackInstances(stateFile: stackState)
            instances += stack.instances
            token = token ?? stack.token
        }
        var scenario = LoadScenario(baseURL: url)
        scenario.users = users
        scenario.perUserPerMinute = perUserPerMinute
        scenario.arrivalRate = rate
        scenario.rampUpSeconds = rampUp
        scenario.warmUpSeconds = warmUp
        scenario.durationSeconds = duration
        if let mix { scenario.mix = try RouteMix(parsing: mix) }
        if let tiers { scenario.tierWeights = try LoadScenario.tierWeights(parsing: tiers) }
        scenario.newTextShare = newTexts
        scenario.zipfExponent = zipf
        scenario.seed = seed
        scenario.serviceToken = token
        scenario.runID = "load-\(UInt32(Date().timeIntervalSince1970) % 1_000_000)"

        if let capacityFrom {
            let result = try await Capacity(
                base: scenario, corpus: corpus, instances: instances, from: capacityFrom, factor: step,
                stepSeconds: stepSeconds, p99Bound: p99Bound, maxRate: capacityMax
            ).run { say($0) }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let data = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: out + "/capacity.json"))
            say("capacity: report \(out)/capacity.json")
            return
        }

        say(
            "soma-load: \(scenario.users) users → \(url), \(String(format: "%.1f", scenario.offeredRate)) req/s offered; "
                + "ramp \(Int(rampUp)) s, warm-up \(Int(warmUp)) s, measured \(Int(duration)) s; corpus \(corpus.texts.count) texts")
        let writes = ledger.map { _ in WriteLedger() }
        let result = try await LoadRunner(scenario: scenario, corpus: corpus, instances: instances, ledger: writes) { say($0) }.run()
        if let ledger, let writes {
            try writes.write(to: ledger)
            say("wrote \(ledger) (\(writes.all.count) entry writes)")
        }
        let report = LoadReport(result: result)
        for line in report.lines { say(line) }
        for path in try report.write(to: out) { say("wrote \(path)") }
        switch report.verdict {
        case .pass: return
        case .fail: throw ExitCode(1)
        case .invalid: throw ExitCode(3)
        }
    }
}

/// `soma-load audit-writes`: the database's entries against a run's ledger. Prints the audit as
/// one JSON object; exit code 0 when nothing acknowledged is missing, duplicated or reordered, 1
/// otherwise.
struct AuditWrites: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit-writes",
        abstract: "Check every acknowledged entry write is stored once, in acknowledgement order per user and instance."
    )

    @Option(help: "The run's ledger (soma-load --ledger).") var ledger: String
    @Option(
        help: "The stored entries as rows of id<TAB>user_id<TAB>received, e.g. psql -At -F $'\\t' -c 'SELECT id, user_id, received FROM entries'."
    )
    var received: String

    func run() async throws {
        let writes = try WriteLedger.read(path: ledger)
        let rows = try ReceivedEntry.parse(tsv: String(decoding: try Data(contentsOf: URL(fileURLWithPath: received)), as: UTF8.self))
        let audit = WriteAudit(writes: writes, received: rows)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        say(String(decoding: try encoder.encode(audit), as: UTF8.self))
        if !audit.passed { throw ExitCode(1) }
    }
}

/// One line straight to standard output (no stdio buffer): the progress is live also through a pipe
/// (make load tees it).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
