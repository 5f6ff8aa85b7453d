import ArgumentParser
import Foundation
import Soma

/// `soma analyze`: one text to its results, or JSON Lines to one result line each.
struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Analyse a text (or JSON Lines with --jsonl) and print the results as JSON."
    )

    @Option(name: .long, help: "Comma-separated modules (emotion, reasoning, values, theory_of_mind, narrative); all when omitted.")
    var modules: String?

    @Flag(name: .long, help: "Read JSON Lines with a \"text\" field; write one {\"id\", \"results\"} line per input line.")
    var jsonl = false

    @Flag(name: .long, help: "Pretty-print the JSON (single text only).")
    var pretty = false

    @Option(name: .long, help: "Models: compiled (soma optimize) or sources (default: SOMA_MODEL_DIR, then ./Fixtures/models).")
    var modelDir: String?

    @Option(name: .long, help: "Convert model weights at load: fp32 or fp16 (default: as stored).")
    var precision: String?

    @Argument(help: "Input file, or - for standard input.")
    var file: String = "-"

    func run() throws {
        let chosen = try parseModules()
        let directory = modelDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? ModelSet.defaultDirectory()
        var weights: WeightTable.Precision?
        if let precision {
            guard let p = WeightTable.Precision(rawValue: precision) else { throw ValidationError("--precision must be fp32 or fp16") }
            weights = p
        }
        let models: ModelSet
        do { models = try ModelSet.load(from: directory, precision: weights) } catch {
            throw ValidationError("cannot load models from \(directory.path): \(error)")
        }
        let engine = Engine(models: models)
        let input = try openInput()
        if jsonl {
            try JSONLinesRunner(engine: engine, modules: chosen).run(input: input, output: FileHandle.standardOutput)
            return
        }
        let data = input.readDataToEndOfFile()
        let text: String
        do { text = try TextInput.decode(data) } catch {
            FileHandle.standardError.write(Data("soma: \(error)\n".utf8))
            throw ExitCode(65)
        }
        let results = engine.analyze(text, modules: chosen)
        var out: Data
        if pretty {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            out = try encoder.encode(results)
        } else {
            out = Data(results.json())
        }
        out.append(0x0A)
        FileHandle.standardOutput.write(out)
    }

    func parseModules() throws -> Set<Module> {
        guard let modules, !modules.isEmpty else { return [] }
        var set: Set<Module> = []
        for name in modules.split(separator: ",") {
            guard let m = Module(name: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("unknown module '\(name)'; known: \(Module.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            set.insert(m)
        }
        return set
    }

    func openInput() throws -> FileHandle {
        if file == "-" { return FileHandle.standardInput }
        guard let handle = FileHandle(forReadingAtPath: file) else {
            throw ValidationError("cannot open \(file)")
        }
        return handle
    }
}
