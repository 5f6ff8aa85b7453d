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
        /// A second reader's labels of the same text, when the set was read twice: a task counts
        /// the item only where both readings give the same gold.
        public var secondReading: [String: [String]]? = nil

        public func label(_ name: String) -> String { labels[name]?.first ?? "" }

        /// The item as the second reader labelled it.
        public var asSecondReading: Item? {
            secondReading.map { Item(id: id, split: split, text: text, labels: $0) }
        }
    }

    public var module: Module
    public var items: [Item]

    public func items(_ split: Split?) -> [Item] {
        guard let split else { return items }
        return items.filter { $0.split == split }
    }

    /// Loads `<directory>/<module>.jsonl`. A line without `split` is held out (a set written as a
    /// whole for testing, such as Fixtures/eval-blind); `secondReader` names a folder with the
    /// same items labelled by a second reader (`<module>.jsonl`, ids and labels only).
    public static func load(_ module: Module, from directory: URL, secondReader: URL? = nil) throws -> EvaluationSet {
        var set = try load(module, from: directory, textRequired: true)
        guard let secondReader else { return set }
        let second = try load(module, from: secondReader, textRequired: false)
        let byID = Dictionary(second.items.map { ($0.id, $0.labels) }, uniquingKeysWith: { a, _ in a })
        for i in set.items.indices {
            guard let labels = byID[set.items[i].id] else {
                throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "\(set.items[i].id) has no second reading"])
            }
            set.items[i].secondReading = labels
        }
        return set
    }

    static func load(_ module: Module, from directory: URL, textRequired: Bool) throws -> EvaluationSet {
        let url = directory.appendingPathComponent("\(module.rawValue).jsonl")
        let text = try String(contentsOf: url, encoding: .utf8)
        var items: [Item] = []
        for (n, line) in text.split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let id = object["id"] as? String, let text = (object["text"] as? String) ?? (textRequired ? nil : ""),
                let split = (object["split"] as? String).map({ Split(rawValue: $0) }) ?? .heldout
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
