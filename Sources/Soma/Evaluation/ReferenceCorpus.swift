public import Foundation

/// Real English text written by others, used to measure how often each pattern fires (for pruning)
/// and how far a compressed model drifts from the full one.
///
/// The corpus is Debian's `fortunes` package (quotations, jokes and sayings collected over decades;
/// free to redistribute, installed by `scripts/ensure-deps.sh`, not committed). Its collections
/// (one file each: "fortunes", "literature", "people", …) are split in two by file (in name order,
/// two of every three collections for frequencies, the third for agreement): the *frequency* part supplies pattern frequencies, the *agreement* part — other
/// collections, other writers — measures agreement after pruning, so pruning is never judged on
/// the text that chose it.
public struct ReferenceCorpus: Sendable {
    public enum Part: String, Sendable { case frequency, agreement }

    public static let defaultDirectory = URL(fileURLWithPath: "/usr/share/games/fortunes", isDirectory: true)
    /// Collections that are pictures made of characters, not prose.
    static let excluded: Set<String> = ["art", "ascii-art"]

    public struct Document: Sendable {
        public var collection: String
        public var text: String
    }

    public let documents: [Document]
    public let frequencyCollections: [String]
    public let agreementCollections: [String]

    public struct MissingError: Error, CustomStringConvertible {
        public var directory: String
        public var description: String {
            "reference corpus not found at \(directory): install Debian's fortunes package (scripts/ensure-deps.sh smoke)"
        }
    }

    public static func load(from directory: URL = defaultDirectory) throws -> ReferenceCorpus {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory.path) else { throw MissingError(directory: directory.path) }
        let collections = names.filter { !$0.contains(".") && !excluded.contains($0) }.sorted()
        var documents: [Document] = []
        var usable: [String] = []
        for name in collections {
            let url = directory.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
                let data = try? Data(contentsOf: url)
            else { continue }
            let text = String(decoding: data, as: UTF8.self)
            let before = documents.count
            for block in text.components(separatedBy: "\n%\n") {
                let t = block.trimmingCharacters(in: .whitespacesAndNewlines)
                if !t.isEmpty && t != "%" { documents.append(Document(collection: name, text: t)) }
            }
            if documents.count > before { usable.append(name) }
        }
        guard documents.count >= 1000 else { throw MissingError(directory: directory.path) }
        // Two collections of every three supply frequencies, the third measures agreement.
        let frequency = usable.enumerated().filter { $0.offset % 3 != 2 }.map(\.element)
        let agreement = usable.enumerated().filter { $0.offset % 3 == 2 }.map(\.element)
        return ReferenceCorpus(documents: documents, frequencyCollections: frequency, agreementCollections: agreement)
    }

    public func texts(_ part: Part) -> [String] {
        let chosen = Set(part == .frequency ? frequencyCollections : agreementCollections)
        return documents.filter { chosen.contains($0.collection) }.map(\.text)
    }
}
