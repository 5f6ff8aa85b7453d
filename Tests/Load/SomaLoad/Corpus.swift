import Foundation

/// The texts a run sends: a corpus file's lines drawn by a Zipf law over their order (the first
/// line the most frequent), plus texts never seen before, made unique per request.
public struct Corpus: Sendable {
    public let texts: [String]
    /// Cumulative probabilities of the Zipf law over `texts`.
    private let cumulative: [Double]

    /// Reads JSON Lines (`{"text": ...}` per line) or plain text (one text per line).
    public init(path: String, exponent: Double) throws {
        guard let data = FileManager.default.contents(atPath: path), let content = String(data: data, encoding: .utf8) else {
            throw LoadError("cannot read the corpus \(path)")
        }
        var texts: [String] = []
        for line in content.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.first == "{", let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let text = object["text"] as? String
            {
                texts.append(text)
            } else if line.first != "{" {
                texts.append(String(line))
            }
        }
        try self.init(texts: texts, exponent: exponent)
    }

    public init(texts: [String], exponent: Double) throws {
        let usable = texts.filter { !$0.isEmpty && $0.utf8.count <= 8 * 1024 }
        guard !usable.isEmpty else { throw LoadError("the corpus has no usable text (non-empty, at most 8 KB)") }
        self.texts = usable
        var acc = 0.0
        var cumulative: [Double] = []
        cumulative.reserveCapacity(usable.count)
        for rank in 1...usable.count {
            acc += 1 / pow(Double(rank), exponent)
            cumulative.append(acc)
        }
        self.cumulative = cumulative.map { $0 / acc }
    }

    /// The text at the Zipf-distributed rank for `unit` in [0, 1).
    func zipf(_ unit: Double) -> String {
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let mid = (low + high) / 2
            if cumulative[mid] <= unit { low = mid + 1 } else { high = mid }
        }
        return texts[low]
    }

    /// A text no request of any run has sent: a corpus text with a unique tail.
    func novel(_ unit: Double, tag: String) -> String {
        "\(zipf(unit)) (\(tag))"
    }
}
