/// What matters to the writer: Schwartz's ten values, ranked, with evidence.
public struct ValuesResult: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var value: String
        /// Share of the text's value evidence, in [0, 1]; the ten scores sum to 1 when any evidence exists.
        public var score: Double
        public var evidence: [String]
    }

    /// All ten values, strongest first (ties in Schwartz's circular order).
    public var hierarchy: [Entry]
    /// openness_to_change, conservation, self_enhancement, self_transcendence, each in [0, 1].
    public var dimensions: [String: Double]
}

/// Scores the ten values from weighted evidence words and phrases. Negated evidence ("I don't care
/// about money") counts against its value instead of for it.
public struct ValuesAnalyzer: Analyzer {
    public static let module = Module.values
    public let model: ModuleModel
    static let negatedWeight: Float = -0.5

    public init(model: ModuleModel) { self.model = model }

    public func analyze(_ doc: Document) -> ValuesResult {
        let ids = model.matcher.tokenIDs(doc)
        let negated = Scope.negationMask(doc)
        var raw = [Float](repeating: 0, count: SchwartzValue.allCases.count)
        var evidence = [[String]](repeating: [], count: SchwartzValue.allCases.count)
        for m in model.matcher.longestMatches(in: doc, ids: ids, accept: { model.patterns[$0].label == "lex" }) {
            let sign: Float = negated[m.range.lowerBound] ? Self.negatedWeight : 1
            let surface = doc.text(of: m.range).lowercased()
            for k in 0..<model.weights.dimensions {
                let w = model.weights[m.pattern, k]
                guard w != 0 else { continue }
                raw[k] += w * sign
                if sign > 0 && !evidence[k].contains(surface) { evidence[k].append(surface) }
            }
        }
        let positive = raw.map { max(0, $0) }
        let total = positive.reduce(0, +)
        let shares = positive.map { total > 0 ? $0 / total : 0 }
        let order = SchwartzValue.allCases.indices.sorted { a, b in
            shares[a] != shares[b] ? shares[a] > shares[b] : a < b
        }
        let hierarchy = order.map { k in
            ValuesResult.Entry(value: SchwartzValue.allCases[k].rawValue, score: rounded(shares[k]), evidence: shares[k] > 0 ? evidence[k] : [])
        }
        func share(_ v: SchwartzValue) -> Float { shares[SchwartzValue.allCases.firstIndex(of: v)!] }
        let dimensions: [String: Double] = [
            "openness_to_change": rounded(share(.selfDirection) + share(.stimulation) + share(.hedonism) / 2),
            "self_enhancement": rounded(share(.achievement) + share(.power) + share(.hedonism) / 2),
            "conservation": rounded(share(.security) + share(.conformity) + share(.tradition)),
            "self_transcendence": rounded(share(.benevolence) + share(.universalism)),
        ]
        return ValuesResult(hierarchy: hierarchy, dimensions: dimensions)
    }
}
