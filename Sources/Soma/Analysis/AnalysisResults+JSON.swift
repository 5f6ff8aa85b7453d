extension AnalysisResults {
    /// The results as JSON bytes, keys sorted: the same document `JSONEncoder` with `.sortedKeys`
    /// produces (tested), at a fraction of the cost.
    public func json() -> [UInt8] {
        var w = JSONWriter()
        write(to: &w)
        return w.bytes
    }

    public func write(to w: inout JSONWriter) {
        w.beginObject()
        if let emotion { w.key("emotion"); emotion.write(to: &w) }
        if let narrative { w.key("narrative"); narrative.write(to: &w) }
        if let reasoning { w.key("reasoning"); reasoning.write(to: &w) }
        if let theoryOfMind { w.key("theory_of_mind"); theoryOfMind.write(to: &w) }
        if let values { w.key("values"); values.write(to: &w) }
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
        w.key("arousal"); w.number(arousal)
        w.key("dominant"); w.string(dominant)
        w.key("emotions"); w.sortedNumbers(emotions)
        w.key("sentences"); w.beginArray()
        for s in sentences {
            w.beginObject()
            w.key("dominant"); w.string(s.dominant)
            w.key("text"); w.string(s.text)
            w.key("valence"); w.number(s.valence)
            w.endObject()
        }
        w.endArray()
        w.key("valence"); w.number(valence)
        w.endObject()
    }
}

extension ReasoningResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.key("chains"); w.beginArray()
        for c in chains {
            w.beginObject()
            w.key("conclusion"); w.string(c.conclusion)
            w.key("confidence"); w.number(c.confidence)
            w.key("marker"); w.string(c.marker)
            w.key("premises"); w.strings(c.premises)
            w.key("relation"); w.string(c.relation)
            w.endObject()
        }
        w.endArray()
        w.key("depth"); w.number(depth)
        w.key("patterns"); w.beginObject()
        for (k, v) in patterns.sorted(by: { $0.key < $1.key }) { w.key(k); w.number(v) }
        w.endObject()
        w.key("style"); w.string(style)
        w.endObject()
    }
}

extension ValuesResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.key("dimensions"); w.sortedNumbers(dimensions)
        w.key("hierarchy"); w.beginArray()
        for e in hierarchy {
            w.beginObject()
            w.key("evidence"); w.strings(e.evidence)
            w.key("score"); w.number(e.score)
            w.key("value"); w.string(e.value)
            w.endObject()
        }
        w.endArray()
        w.endObject()
    }
}

extension TheoryOfMindResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.key("agents"); w.beginArray()
        for a in agents {
            w.beginObject()
            w.key("agent"); w.string(a.agent)
            w.key("states"); w.beginArray()
            for s in a.states {
                w.beginObject()
                w.key("content"); w.string(s.content)
                w.key("negated"); w.bool(s.negated)
                w.key("type"); w.string(s.type)
                w.key("verb"); w.string(s.verb)
                w.endObject()
            }
            w.endArray()
            w.endObject()
        }
        w.endArray()
        w.key("other_references"); w.number(otherReferences)
        w.key("perspective_taking"); w.number(perspectiveTaking)
        w.key("self_references"); w.number(selfReferences)
        w.endObject()
    }
}

extension NarrativeResult {
    func write(to w: inout JSONWriter) {
        w.beginObject()
        w.key("arc"); w.beginObject()
        w.key("cognitive_tension"); w.numbers(arc.cognitiveTension)
        w.key("plot_progression"); w.numbers(arc.plotProgression)
        w.key("staging"); w.numbers(arc.staging)
        w.endObject()
        w.key("characters"); w.strings(characters)
        w.key("events"); w.beginArray()
        for e in events {
            w.beginObject()
            w.key("index"); w.number(e.index)
            w.key("order"); w.number(e.order)
            w.key("tense"); w.string(e.tense)
            w.key("text"); w.string(e.text)
            if let time = e.time { w.key("time"); w.string(time) }
            w.key("verb"); w.string(e.verb)
            w.endObject()
        }
        w.endArray()
        w.key("perspective"); w.string(perspective)
        w.key("tense"); w.string(tense)
        w.endObject()
    }
}
