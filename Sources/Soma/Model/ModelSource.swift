public import Foundation

/// Reads a module's human-editable source form: every `*.tsv` file of
/// `<directory>/<module>/`, in name order (see Fixtures/models/README.md).
///
/// Lines with the same pattern and class merge: a later line sets the weights it names and adds
/// its flags. Unknown weight names, malformed weights and missing columns are errors that name
/// the file and line, so a typo never silently becomes a zero weight.
public enum ModelSource {
    public struct LoadError: Error, CustomStringConvertible, Sendable {
        public var file: String
        public var line: Int
        public var message: String
        public var description: String { "\(file):\(line): \(message)" }
    }

    public static func load(_ module: Module, from directory: URL) throws -> ModuleModel {
        let folder = directory.appendingPathComponent(module.rawValue, isDirectory: true)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { $0.hasSuffix(".tsv") }
            .sorted()
        guard !names.isEmpty else {
            throw LoadError(file: folder.path, line: 0, message: "no .tsv files for module \(module.rawValue)")
        }
        var builder = Builder(module: module)
        for name in names {
            try builder.read(file: folder.appendingPathComponent(name), depth: 0)
        }
        return try builder.model()
    }

    /// Parses source lines (for tests and tools); `origin` names them in errors.
    public static func parse(_ module: Module, text: String, origin: String = "<memory>") throws -> ModuleModel {
        var builder = Builder(module: module)
        try builder.read(text: text, origin: origin, base: nil, depth: 0)
        return try builder.model()
    }

    struct Builder {
        let module: Module
        let dimensions: [String: Int]
        var patterns: [Pattern] = []
        var rows: [[Float]] = []
        var positions: [String: Int] = [:]

        func model() throws -> ModuleModel {
            let classes = Set(patterns.map(\.label)).count
            guard classes <= ModuleModel.maxClasses else {
                throw LoadError(
                    file: module.rawValue, line: 0,
                    message: "\(classes) pattern classes; a model has at most \(ModuleModel.maxClasses) (one bit each in a word's class mask)")
            }
            return ModuleModel(module: module, patterns: patterns, weights: WeightTable(dimensions: module.dimensions.count, rows: rows))
        }

        init(module: Module) {
            self.module = module
            dimensions = Dictionary(uniqueKeysWithValues: module.dimensions.enumerated().map { ($1, $0) })
        }

        mutating func read(file: URL, depth: Int) throws {
            let data: Data
            do { data = try Data(contentsOf: file) } catch {
                throw LoadError(file: file.path, line: 0, message: "cannot read: \(error.localizedDescription)")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw LoadError(file: file.path, line: 0, message: "not valid UTF-8")
            }
            try read(text: text, origin: file.path, base: file.deletingLastPathComponent(), depth: depth)
        }

        mutating func read(text: String, origin: String, base: URL?, depth: Int) throws {
            var lineNumber = 0
            for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
                lineNumber += 1
                let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
                if line.allSatisfy({ $0 == " " || $0 == "\t" }) || line.hasPrefix("#") { continue }
                if line.hasPrefix("@include ") {
                    guard let base, depth < 4 else {
                        throw LoadError(file: origin, line: lineNumber, message: "@include not allowed here")
                    }
                    let target = String(line.dropFirst("@include ".count)).trimmingCharacters(in: .whitespaces)
                    try read(file: base.appendingPathComponent(target).standardizedFileURL, depth: depth + 1)
                    continue
                }
                let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
                guard columns.count == 4 else {
                    throw LoadError(file: origin, line: lineNumber, message: "expected 4 tab-separated columns, found \(columns.count)")
                }
                let tokens = columns[0].split(separator: " ").map { String($0) }
                let label = columns[1].trimmingCharacters(in: .whitespaces)
                guard !tokens.isEmpty, !label.isEmpty else {
                    throw LoadError(file: origin, line: lineNumber, message: "empty pattern or class")
                }
                let weights = try parseWeights(columns[2], origin: origin, line: lineNumber)
                let flagText = columns[3].trimmingCharacters(in: .whitespaces)
                let flags: Set<String> =
                    flagText == "-" || flagText.isEmpty
                    ? [] : Set(flagText.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                add(
                    tokens: tokens.map { $0.lowercased() == $0 || Slot(rawValue: $0) != nil ? $0 : $0.lowercased() }, label: label, weights: weights,
                    flags: flags)
            }
        }

        func parseWeights(_ column: Substring, origin: String, line: Int) throws -> [(Int, Float)] {
            let text = column.trimmingCharacters(in: .whitespaces)
            guard text != "-", !text.isEmpty else { return [] }
            var result: [(Int, Float)] = []
            for pair in text.split(separator: " ") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else {
                    throw LoadError(file: origin, line: line, message: "weight '\(pair)' is not name=value")
                }
                guard let d = dimensions[String(parts[0])] else {
                    throw LoadError(
                        file: origin, line: line,
                        message: "unknown weight '\(parts[0])' for module \(module.rawValue); known: \(module.dimensions.joined(separator: ", "))")
                }
                guard let value = Float(parts[1]), value.isFinite else {
                    throw LoadError(file: origin, line: line, message: "weight '\(pair)' is not a finite number")
                }
                result.append((d, value))
            }
            return result
        }

        mutating func add(tokens: [String], label: String, weights: [(Int, Float)], flags: Set<String>) {
            let key = tokens.joined(separator: " ") + "\t" + label
            if let at = positions[key] {
                for (d, v) in weights { rows[at][d] = v }
                patterns[at].flags.formUnion(flags)
                return
            }
            var dense = [Float](repeating: 0, count: module.dimensions.count)
            for (d, v) in weights { dense[d] = v }
            positions[key] = patterns.count
            patterns.append(Pattern(tokens: tokens, label: label, flags: flags))
            rows.append(dense)
        }
    }
}
