/// A word's 64-bit key: FNV-1a over its UTF-8 bytes. The tokenizer computes it once per token
/// (`Token.key`), so every later look-up of the token, in every module, is an integer probe instead
/// of hashing the String again (String hashing was the engine's largest single cost:
/// docs/PERFORMANCE.md, "Engine speed").
public enum WordKey {
    /// (`Token.init` computes the same with `FNV1a.mix(byte:)` in its own pass over the bytes.)
    public static func of(_ word: String) -> UInt64 {
        var word = word
        return word.withUTF8 { FNV1a.hash($0) }
    }

    /// The slot of `key` in a table of `1 << (64 - shift)` slots (Fibonacci hashing: FNV-1a's low
    /// bits are weak, the multiply spreads every bit into the top ones).
    @inline(__always)
    static func slot(_ key: UInt64, shift: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }
}

/// An immutable-after-build map from words to values, probed by a token's precomputed key.
///
/// Open addressing with linear probing over a power-of-two slot array at most half full. A hit is
/// confirmed by comparing the word itself, so two words whose keys collide never alias.
/// Hand-written rather than `Dictionary<String, Value>`: a probe costs a multiply and one or two
/// array reads where the Dictionary hashed the whole String with SipHash on every look-up, five
/// modules times over (the engine gate measures the difference).
public struct WordTable<Value: Sendable>: Sendable {
    private var slots: [Int32]
    private var shift: UInt64
    private var keys: [UInt64] = []
    private var words: [String] = []
    private var values: [Value] = []

    public init() {
        slots = [Int32](repeating: -1, count: 8)
        shift = 61
    }

    public init<S: Sequence>(_ pairs: S) where S.Element == (String, Value) {
        self.init()
        for (word, value) in pairs { insert(word, value) }
    }

    public var count: Int { words.count }

    /// Every word with its value, in insertion order.
    public var entries: Zip2Sequence<[String], [Value]> { zip(words, values) }

    @inline(__always)
    private func index(key: UInt64, word: String) -> (slot: Int, entry: Int32) {
        let mask = slots.count - 1
        var s = WordKey.slot(key, shift: shift)
        while true {
            let e = slots[s]
            if e < 0 || (keys[Int(e)] == key && words[Int(e)] == word) { return (s, e) }
            s = (s + 1) & mask
        }
    }

    /// The value of the token's word (its `lower` form).
    @inline(__always)
    public subscript(token: Token) -> Value? {
        let e = index(key: token.key, word: token.lower).entry
        return e < 0 ? nil : values[Int(e)]
    }

    public subscript(word: String) -> Value? {
        let e = index(key: WordKey.of(word), word: word).entry
        return e < 0 ? nil : values[Int(e)]
    }

    /// Sets the value of `word`, replacing the one it had. (Entries are never removed: the engine's
    /// tables are built once and only read afterwards.)
    public mutating func insert(_ word: String, _ value: Value) {
        let key = WordKey.of(word)
        let (s, e) = index(key: key, word: word)
        if e >= 0 {
            values[Int(e)] = value
            return
        }
        slots[s] = Int32(words.count)
        keys.append(key)
        words.append(word)
        values.append(value)
        if words.count * 2 > slots.count { grow() }
    }

    /// Updates the value of `word` in place, starting from `initial` when it has none.
    public mutating func update(_ word: String, default initial: @autoclosure () -> Value, _ change: (inout Value) -> Void) {
        var value = self[word] ?? initial()
        change(&value)
        insert(word, value)
    }

    public func contains(_ token: Token) -> Bool { index(key: token.key, word: token.lower).entry >= 0 }
    public func contains(_ word: String) -> Bool { self[word] != nil }

    private mutating func grow() {
        let size = slots.count * 2
        shift -= 1
        slots = [Int32](repeating: -1, count: size)
        for (e, key) in keys.enumerated() {
            var s = WordKey.slot(key, shift: shift)
            while slots[s] >= 0 { s = (s + 1) & (size - 1) }
            slots[s] = Int32(e)
        }
    }
}

/// A set of words probed by token key (see `WordTable`).
public struct WordSet: Sendable, ExpressibleByArrayLiteral {
    private var table = WordTable<Bool>()

    public init<S: Sequence>(_ words: S) where S.Element == String {
        for w in words { table.insert(w, true) }
    }

    public init(arrayLiteral elements: String...) { self.init(elements) }

    @inline(__always)
    public func contains(_ token: Token) -> Bool { table.contains(token) }
    public func contains(_ word: String) -> Bool { table.contains(word) }
    public mutating func insert(_ word: String) { table.insert(word, true) }
    public var count: Int { table.count }
    public var words: [String] { table.entries.map(\.0) }
}

/// Integer keys to node numbers: the trie's edges, keyed by (node, token id), probed without
/// hashing (see `WordTable`). Keys are exact, so no confirmation is needed.
struct EdgeTable: Sendable {
    private var keys: [UInt64]
    private var values: [Int32]
    private var shift: UInt64 = 61
    private(set) var count = 0

    init() {
        keys = [UInt64](repeating: 0, count: 8)
        values = [Int32](repeating: -1, count: 8)
    }

    @inline(__always)
    subscript(key: UInt64) -> Int32? {
        let mask = values.count - 1
        var s = WordKey.slot(key, shift: shift)
        while true {
            let v = values[s]
            if v < 0 { return nil }
            if keys[s] == key { return v }
            s = (s + 1) & mask
        }
    }

    /// Adds `key` → `value` (`value` ≥ 0); the key must not be present yet.
    mutating func insert(_ key: UInt64, _ value: Int32) {
        precondition(value >= 0)
        if (count + 1) * 2 > values.count { grow() }
        place(key, value)
        count += 1
    }

    private mutating func place(_ key: UInt64, _ value: Int32) {
        let mask = values.count - 1
        var s = WordKey.slot(key, shift: shift)
        while values[s] >= 0 { s = (s + 1) & mask }
        keys[s] = key
        values[s] = value
    }

    private mutating func grow() {
        let old = zip(keys, values).filter { $0.1 >= 0 }
        let size = values.count * 2
        shift -= 1
        keys = [UInt64](repeating: 0, count: size)
        values = [Int32](repeating: -1, count: size)
        for (k, v) in old { place(k, v) }
    }
}
