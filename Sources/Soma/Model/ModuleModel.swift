/// A module's model in memory: its pattern table with FP32 weights, the trie over it and a
/// single-word index.
public struct ModuleModel: Sendable {
    /// The tables live in one immutable object, so copying a model (or an analyser holding one)
    /// is a single reference count, not one per table.
    final class Storage: Sendable {
        let module: Module
        let patterns: [Pattern]
        let weights: WeightTable
        let matcher: PatternMatcher
        let checksum: UInt64
        let wordIndex: [String: [Int32]]
        let dimensionIndex: [String: Int]
        /// Bit per class, and per word the classes it has as a single-word pattern: the hot
        /// `contains(word:label:)` is one probe and a bit test. A model has at most `maxClasses`
        /// classes (the loaders refuse more), so every class has its bit.
        let labelBit: [String: UInt64]
        let prefixMask: [String: UInt64]
        let wordLabels: WordTable<UInt64>

        init(module: Module, patterns: [Pattern], weights: WeightTable) {
            self.module = module
            self.patterns = patterns
            self.weights = weights
            let side = module.sideClasses
            matcher = side.isEmpty ? PatternMatcher(patterns: patterns) : PatternMatcher(patterns: patterns, where: { !side.contains($0.label) })
            var index: [String: [Int32]] = [:]
            for (i, p) in patterns.enumerated() where p.tokens.count == 1 {
                index[p.tokens[0], default: []].append(Int32(i))
            }
            wordIndex = index
            var bits: [String: UInt64] = [:]
            for p in patterns where bits[p.label] == nil { bits[p.label] = 1 << UInt64(bits.count) }
            labelBit = bits
            var prefixes: [String: UInt64] = ["": bits.values.reduce(0, |)]
            for (label, bit) in bits {
                var prefix = ""
                for part in label.split(separator: ".", omittingEmptySubsequences: false).dropLast() {
                    prefix += part + "."
                    prefixes[prefix, default: 0] |= bit
                }
            }
            prefixMask = prefixes
            var words = WordTable<UInt64>()
            for (word, hits) in index.sorted(by: { $0.key < $1.key }) {
                var mask: UInt64 = 0
                for h in hits { mask |= bits[patterns[Int(h)].label] ?? 0 }
                words.insert(word, mask)
            }
            wordLabels = words
            dimensionIndex = Dictionary(uniqueKeysWithValues: module.dimensions.enumerated().map { ($1, $0) })
            checksum = ModuleModel.checksum(module: module, patterns: patterns, weights: weights)
        }
    }

    let storage: Storage

    public var module: Module { storage.module }
    public var patterns: [Pattern] { storage.patterns }
    /// Row `i` holds the weights of `patterns[i]`, in the order of `module.dimensions`.
    public var weights: WeightTable { storage.weights }
    public var matcher: PatternMatcher { storage.matcher }
    /// Checksum over the table's canonical content (tokens, class, weights, flags).
    public var checksum: UInt64 { storage.checksum }
    private var wordIndex: [String: [Int32]] { storage.wordIndex }
    private var dimensionIndex: [String: Int] { storage.dimensionIndex }
    private var labelBit: [String: UInt64] { storage.labelBit }
    private var prefixMask: [String: UInt64] { storage.prefixMask }
    private var wordLabels: WordTable<UInt64> { storage.wordLabels }

    /// The most pattern classes a model may have: one bit each in a word's class mask.
    public static let maxClasses = 64

    public init(module: Module, patterns: [Pattern], weights: WeightTable) {
        precondition(weights.count == patterns.count && weights.dimensions == module.dimensions.count)
        precondition(Set(patterns.map(\.label)).count <= Self.maxClasses, "the loaders refuse models with more classes")
        storage = Storage(module: module, patterns: patterns, weights: weights)
    }

    /// Short, stable identifier of this model's content, e.g. `emotion-3f9a0c12`.
    public var version: String {
        let hex = String(checksum, radix: 16)
        return "\(module.rawValue)-\(String(repeating: "0", count: max(0, 16 - hex.count)) + hex)"
    }

    /// Single-word patterns for `word` (already lower-cased), optionally of one class only.
    public func patterns(forWord word: String, label: String? = nil) -> [Int] {
        guard let hits = wordIndex[word] else { return [] }
        guard let label else { return hits.map(Int.init) }
        return hits.lazy.map(Int.init).filter { patterns[$0].label == label }
    }

    /// Whether `word` is a single-word pattern of class `label`.
    @inline(__always)
    public func contains(word: String, label: String) -> Bool {
        guard let bit = labelBit[label] else { return false }
        return (wordLabels[word] ?? 0) & bit != 0
    }

    /// Whether `word` is a single-word pattern whose class starts with `prefix` ("" = any class;
    /// fast for prefixes ending at a ".", like "agent." or "verb.").
    public func contains(word: String, labelPrefix prefix: String) -> Bool {
        if let mask = prefixMask[prefix] { return (wordLabels[word] ?? 0) & mask != 0 }
        guard let hits = wordIndex[word] else { return false }
        return hits.contains { patterns[Int($0)].label.hasPrefix(prefix) }
    }

    /// The classes `word` has as a single-word pattern, as a bit mask (see `bit(for:)`).
    @inline(__always)
    public func labelMask(of word: String) -> UInt64 { wordLabels[word] ?? 0 }

    /// The same for a token's word, probed by its precomputed key (no String hashing).
    @inline(__always)
    public func labelMask(of token: Token) -> UInt64 { wordLabels[token] ?? 0 }

    /// The bit of class `label` in `labelMask(of:)` (0 for a class the model lacks), or of every
    /// class starting with `label` when it ends with "." (and "" for any class).
    public func bit(for label: String) -> UInt64 {
        if label.isEmpty || label.hasSuffix(".") { return prefixMask[label] ?? 0 }
        return labelBit[label] ?? 0
    }

    /// The weight named `dimension` of pattern `index` (0 when the module has no such weight).
    @inline(__always)
    public func weight(_ index: Int, _ dimension: String) -> Float {
        guard let d = dimensionIndex[dimension] else { return 0 }
        return storage.weights[index, d]
    }

    public func dimension(_ name: String) -> Int? { dimensionIndex[name] }

    /// Number of patterns by class, for reports.
    public func countsByLabel() -> [String: Int] {
        var counts: [String: Int] = [:]
        for p in patterns { counts[p.label, default: 0] += 1 }
        return counts
    }

    /// The same model with its weights in `precision`.
    public func converted(to precision: WeightTable.Precision) -> ModuleModel {
        precision == weights.precision ? self : ModuleModel(module: module, patterns: patterns, weights: weights.converted(to: precision))
    }

    /// The model without the patterns `keep` refuses, e.g. pruned by frequency.
    public func filtered(_ keep: (Int, Pattern) -> Bool) -> ModuleModel {
        let rows = patterns.indices.filter { keep($0, patterns[$0]) }
        return ModuleModel(module: module, patterns: rows.map { patterns[$0] }, weights: weights.selecting(rows))
    }

    /// The same patterns with corpus frequencies set (`frequencies[i]` for `patterns[i]`).
    public func withFrequencies(_ frequencies: [Float]) -> ModuleModel {
        var copy = patterns
        for i in copy.indices { copy[i].frequency = frequencies[i] }
        return ModuleModel(module: module, patterns: copy, weights: weights)
    }

    static func checksum(module: Module, patterns: [Pattern], weights: WeightTable) -> UInt64 {
        var hash = FNV1a()
        func mix(_ bytes: some Sequence<UInt8>) { hash.mix(bytes) }
        mix(module.rawValue.utf8)
        for (i, p) in patterns.enumerated() {
            mix(p.tokens.joined(separator: " ").utf8)
            mix([0])
            mix(p.label.utf8)
            mix([0])
            for d in 0..<weights.dimensions { withUnsafeBytes(of: weights[i, d].bitPattern.littleEndian) { mix($0) } }
            mix(p.flags.sorted().joined(separator: ",").utf8)
            mix([1])
        }
        return hash.value
    }
}
