/// The five analyses Soma performs.
public enum Module: String, CaseIterable, Codable, Sendable, Comparable {
    case emotion
    case reasoning
    case values
    case theoryOfMind = "theory_of_mind"
    case narrative

    /// Classes a module's analyser matches with a trie of their own: the model's main trie (and so
    /// its vocabulary, probed at every token) leaves them out. Emotion's `schedule` marks are read
    /// once per document, only for texts that may be notices; in the main trie their fifty-odd words
    /// cost the engine gate's emotion workload 8 % (the same engine on the models without them did
    /// not pay it), most likely by growing the vocabulary's table past a power of two.
    public var sideClasses: Set<String> { self == .emotion ? ["schedule"] : [] }

    /// The names of the weights a pattern of this module may carry, in storage order.
    public var dimensions: [String] {
        switch self {
        case .emotion:
            ["valence", "arousal"] + Emotion.allCases.map(\.rawValue) + ["scale", "before", "after"]
        case .values:
            SchwartzValue.allCases.map(\.rawValue)
        case .reasoning:
            ["confidence"]
        case .theoryOfMind:
            []
        case .narrative:
            ["order"]
        }
    }

    /// Parses a module name as clients write it ("theory_of_mind", "theory-of-mind", "tom").
    public init?(name: String) {
        switch name.lowercased() {
        case "emotion", "emotions": self = .emotion
        case "reasoning": self = .reasoning
        case "values", "value": self = .values
        case "theory_of_mind", "theory-of-mind", "theoryofmind", "tom": self = .theoryOfMind
        case "narrative": self = .narrative
        default: return nil
        }
    }

    public static func < (lhs: Module, rhs: Module) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// Plutchik's eight basic emotions.
public enum Emotion: String, CaseIterable, Codable, Sendable {
    case joy, trust, fear, surprise, sadness, disgust, anger, anticipation

    /// Plutchik's opposite on the wheel: what a negated emotion leans towards.
    public var opposite: Emotion {
        switch self {
        case .joy: .sadness
        case .sadness: .joy
        case .trust: .disgust
        case .disgust: .trust
        case .fear: .anger
        case .anger: .fear
        case .surprise: .anticipation
        case .anticipation: .surprise
        }
    }
}

/// Schwartz's ten basic values.
public enum SchwartzValue: String, CaseIterable, Codable, Sendable {
    case selfDirection = "self_direction"
    case stimulation, hedonism, achievement, power, security, conformity, tradition, benevolence, universalism
}
