/// Closed-class words that the rules of several modules test at every token, one bit per list:
/// the document looks each token up once (`Document.closed`), and a rule's test is a bit test
/// instead of a probe of its own table. Before, the same few hundred words were probed at every
/// token up to eight times per document: negation scope by three modules, agent openers by two,
/// pronouns and clause openers once each (docs/PERFORMANCE.md, "Engine speed").
///
/// The lists stay with the rules that own them; this table only indexes them.
public struct ClosedClass: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `Scope.negators`.
    public static let negator = ClosedClass(rawValue: 1 << 0)
    /// `Scope.scopeBreakers`: the clause turns and a negation's scope ends.
    public static let scopeBreaker = ClosedClass(rawValue: 1 << 1)
    /// A word in `AgentDetector.closed`: a pronoun, determiner, collective or quantifier, which can
    /// open a mention of a person.
    public static let agentOpener = ClosedClass(rawValue: 1 << 2)
    /// A personal pronoun (`AgentDetector.pronouns`).
    public static let pronoun = ClosedClass(rawValue: 1 << 3)
    /// A conjunction or subordinator that opens a clause (`NarrativeAnalyzer.clauseOpeners`).
    public static let clauseOpener = ClosedClass(rawValue: 1 << 4)

    static let table: WordTable<ClosedClass> = {
        var table = WordTable<ClosedClass>()
        func add(_ words: [String], _ bit: ClosedClass) {
            for w in words { table.update(w, default: []) { $0.formUnion(bit) } }
        }
        add(Scope.negators.words, .negator)
        add(Scope.scopeBreakers.words, .scopeBreaker)
        add(AgentDetector.closed.entries.map(\.0), .agentOpener)
        add(AgentDetector.pronouns.entries.map(\.0), .pronoun)
        add(NarrativeAnalyzer.clauseOpeners.words, .clauseOpener)
        return table
    }()

    /// The classes of `token`'s word (empty for every other word).
    @inline(__always)
    static func of(_ token: Token) -> ClosedClass { table[token] ?? [] }
}
