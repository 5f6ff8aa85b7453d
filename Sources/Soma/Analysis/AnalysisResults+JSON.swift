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
        sortedMembers(dict) { $0.number($1) }
    }

    mutating func sortedNumbers(_ dict: [String: Int]) {
        sortedMembers(dict) { $0.number($1) }
    }

    /// An object of `dict`'s members, keys in `String` order. The members are sorted in a buffer on
    /// the stack by insertion (a result's dictionaries have four to ten keys): `dict.sorted(by:)`
    /// allocated an array and ran the general sort, about 800 instructions a member
    /// (scripts/engine-profile.py).
    private mutating func sortedMembers<Value>(_ dict: [String: Value], _ write: (inout JSONWriter, Value) -> Void) {
        beginObject()
        withUnsafeTemporaryAllocation(of: (key: String, value: Value).self, capacity: dict.count) { members in
            var n = 0
            for member in dict {
                var k = n
                while k > 0 && member.key < members[k - 1].key {
                    (members.baseAddress! + k).moveInitialize(from: members.baseAddress! + k - 1, count: 1)
                    k -= 1
                }
                (members.baseAddress! + k).initialize(to: member)
                n += 1
            }
            for k in 0..<n {
                key(members[k].key)
                write(&self, members[k].value)
            }
            _ = members.baseAddress.map { $0.deinitialize(count: n) }
        }
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
        w.field("patterns"); w.sortedNumbers(patterns)
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
