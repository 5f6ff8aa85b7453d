extension AnalysisResults {
    /// The results as JSON bytes, keys sorted: the same document `JSONEncoder` with `.sortedKeys`
    /// produces (tested), at a fraction of the cost.
    public func json() -> [UInt8] {
        // Room for a short text's results (about 1 KB with every module) without growing.
        var w = JSONWriter(capacity: 2048)
        write(to: &w)
        return w.bytes
    }

    public func write(to w: inout JSONWriter) {
        w.beginObject()
        if let emotion { w.field("emotion"); emotion.write(to: &w) }
        if let narrative { w.field("narrative"); narrative.write(to: &w) }
        if let reasoning { w.field("reasoning"); reasoning.write(to: &w) }
        if let theoryOfMind { w.field("theory_of_mind"); theoryOfMind.write(to: &w) }
        if let values { w.field("values"); values.write(to: &w) }
        w.endObject()
    }
}

extension JSONWriter {
    mutating func sortedNumbers(_ dict: [String: Double]) {
        beginObject()
        for (k, v) in dict.sorted(by: { $0.key < $1.key }) { key(k); number(v) }
        endObject()
    }

    mutating func numbers(_ list: [Double]) {
        beginArray()
        for x in list { number(x) }
        endArray()
    }

    mutating func strings(_ list: [String]) {
        beginArray()
        for s in list { string(s) }
        endArray()
    }
}

extension EmotionResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.field("arousal"); w.number(arousal)
        w.field("dominant"); w.string(dominant)
        w.field("emotions"); w.sortedNumbers(emotions)
        w.field("sentences"); w.beginArray()
        for s in sentences {
            w.beginObject()
            w.field("dominant"); w.string(s.dominant)
            w.field("text"); w.string(s.text)
            w.field("valence"); w.number(s.valence)
            w.endObject()
        }
        w.endArray()
        w.field("valence"); w.number(valence)
        w.endObject()
    }
}

extension ReasoningResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.field("chains"); w.beginArray()
        for c in chains {
            w.beginObject()
            w.field("conclusion"); w.string(c.conclusion)
            w.field("confidence"); w.number(c.confidence)
            w.field("marker"); w.string(c.marker)
            w.field("premises"); w.strings(c.premises)
            w.field("relation"); w.string(c.relation)
            w.endObject()
        }
        w.endArray()
        w.field("depth"); w.number(depth)
        w.field("patterns"); w.beginObject()
        for (k, v) in patterns.sorted(by: { $0.key < $1.key }) { w.key(k); w.number(v) }
        w.endObject()
        w.field("style"); w.string(style)
        w.endObject()
    }
}

extension ValuesResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.field("dimensions"); w.sortedNumbers(dimensions)
        w.field("hierarchy"); w.beginArray()
        for e in hierarchy {
            w.beginObject()
            w.field("evidence"); w.strings(e.evidence)
            w.field("score"); w.number(e.score)
            w.field("value"); w.string(e.value)
            w.endObject()
        }
        w.endArray()
        w.endObject()
    }
}

extension TheoryOfMindResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.field("agents"); w.beginArray()
        for a in agents {
            w.beginObject()
            w.field("agent"); w.string(a.agent)
            w.field("states"); w.beginArray()
            for s in a.states {
                w.beginObject()
                w.field("content"); w.string(s.content)
                w.field("negated"); w.bool(s.negated)
                w.field("type"); w.string(s.type)
                w.field("verb"); w.string(s.verb)
                w.endObject()
            }
            w.endArray()
            w.endObject()
        }
        w.endArray()
        w.field("other_references"); w.number(otherReferences)
        w.field("perspective_taking"); w.number(perspectiveTaking)
        w.field("self_references"); w.number(selfReferences)
        w.endObject()
    }
}

extension NarrativeResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.field("arc"); w.beginObject()
        w.field("cognitive_tension"); w.numbers(arc.cognitiveTension)
        w.field("plot_progression"); w.numbers(arc.plotProgression)
        w.field("staging"); w.numbers(arc.staging)
        w.endObject()
        w.field("characters"); w.strings(characters)
        w.field("events"); w.beginArray()
        for e in events {
            w.beginObject()
            w.field("index"); w.number(e.index)
            w.field("order"); w.number(e.order)
            w.field("tense"); w.string(e.tense)
            w.field("text"); w.string(e.text)
            if let time = e.time { w.field("time"); w.string(time) }
            w.field("verb"); w.string(e.verb)
            w.endObject()
        }
        w.endArray()
        w.field("perspective"); w.string(perspective)
        w.field("tense"); w.string(tense)
        w.endObject()
    }
}
