/// One row of a model's pattern table (its weights live in the model's `WeightTable`, same row).
public struct Pattern: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// One literal token.
        case word
        /// Several literal tokens.
        case phrase
        /// Contains at least one slot (`<AGENT>`, `<ANY>`, `<NUM>`).
        case template
    }

    /// Lower-case tokens; slots are written `<AGENT>`, `<ANY>`, `<NUM>`.
    public var tokens: [String]
    /// What the pattern means to its module ("lex", "causal:premise_after", "belief", …).
    public var label: String
    /// Fraction of reference-corpus documents in which the pattern fires (0 until measured).
    public var frequency: Float
    public var flags: Set<String>

    public var kind: Kind {
        if tokens.contains(where: { Slot(rawValue: $0) != nil }) { return .template }
        return tokens.count == 1 ? .word : .phrase
    }

    public var isProtected: Bool { flags.contains("protected") }

    public init(tokens: [String], label: String, frequency: Float = 0, flags: Set<String> = []) {
        self.tokens = tokens
        self.label = label
        self.frequency = frequency
        self.flags = flags
    }
}

/// A slot in a template pattern.
public enum Slot: String, Sendable {
    case agent = "<AGENT>"
    case any = "<ANY>"
    case number = "<NUM>"
}
