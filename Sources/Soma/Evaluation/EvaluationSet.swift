public import Foundation

/// A module's labeled evaluation items (Fixtures/eval/<module>.jsonl).
public struct EvaluationSet: Sendable {
    public enum Split: String, Sendable { case dev, heldout }

    public struct Item: Sendable {
        public var id: String
        public var split: Split
        public var text: String
        /// Every field of the line, as strings or string lists.
        public var labels: [String: [String]]

        public func label(_ name: String) -> String { labels[name]?.first ?? "" }
    }

    public var module: Module
    public var items: [Item]

    public func items(_ split: Split?) -> [Item] {
        guard let split else { return items }
        return items.filter { $0.split == split }
    }

    public static func load(_ module: Module, from directory: URL) throws -> EvaluationSet {
        let url = directory.appendingPathComponent("\(module.rawValue).jsonl")
        let text = try String(contentsOf: url, encoding: .utf8)
        var items: [Item] = []
        for (n, line) in text.split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let id = object["id"] as? String, let text = object["text"] as? String,
                let splitName = object["split"] as? String, let split = Split(rawValue: splitName)
            else {
                throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "\(url.path):\(n + 1): malformed evaluation item"])
            }
            var labels: [String: [String]] = [:]
            for (key, value) in object {
                if let s = value as? String { labels[key] = [s] } else if let list = value as? [String] { labels[key] = list }
            }
            items.append(Item(id: id, split: split, text: text, labels: labels))
        }
        return EvaluationSet(module: module, items: items)
    }

    public static var defaultDirectory: URL {
        let local = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Fixtures/eval", isDirectory: true)
        if FileManager.default.fileExists(atPath: local.path) { return local }
        return ModelSet.sourceRoot.appendingPathComponent("Fixtures/eval", isDirectory: true)
    }
}
