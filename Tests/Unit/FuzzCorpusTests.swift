// The per-input code of the fuzz targets and the regression test over their corpora.
//
// `FuzzInput` is the one copy of what each libFuzzer target (Fuzz/Sources/Fuzz*) does with one
// input: the Fuzz package compiles this same file through the symlink
// Fuzz/Sources/FuzzInput/FuzzCorpusTests.swift (with SOMA_FUZZ defined, which leaves the tests out),
// and the suite below replays every file of Fixtures/fuzz/<target>/ (seeds and crash-* inputs)
// through it in the normal unit test run. A decoder that traps takes the test process down with
// it; a broken property (an error of the wrong type, a cursor that does not round-trip, output
// that is not JSON) is a `FuzzInput.Violation`, which the fuzz targets turn into a crash.
import Foundation
import HTTPTypes
import NIOHTTP1
import NIOHTTPTypesHTTP1

@testable import Soma
@testable import SomaHTTP

#if !SOMA_FUZZ
    import Testing
#endif

enum FuzzInput {
    /// The input surfaces, named as the folders of Fixtures/fuzz and the targets of scripts/fuzz.sh.
    enum Target: String, CaseIterable, Sendable {
        case text, model, json, cursor, idempotency
    }

    /// A property an input broke (as opposed to a crash, which needs no report of its own).
    struct Violation: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func run(_ target: Target, _ bytes: [UInt8], engine: @autoclosure () -> Engine) throws(Violation) {
        switch target {
        case .text: try text(bytes, engine: engine())
        case .model: try model(bytes)
        case .json: try json(bytes)
        case .cursor: try cursor(bytes)
        case .idempotency: try idempotency(bytes)
        }
    }

    // MARK: - text (Fuzz/Sources/FuzzText)

    /// Bytes → String → every analyser → the results' JSON, which must parse and stay within
    /// `maxAmplification` × the text's bytes + `fixedOverhead` (`bounded: false` skips that bound).
    static func text(_ bytes: [UInt8], engine: Engine, bounded: Bool = true) throws(Violation) {
        let lossy = String(decoding: bytes, as: UTF8.self)
        try analyze(lossy, engine: engine, bounded: bounded)
        if let strict = String(validating: bytes, as: UTF8.self) {
            // Valid UTF-8 decodes to the same string either way; nothing new to analyse.
            guard strict == lossy, Array(strict.utf8) == bytes else { throw Violation("valid UTF-8 decoded to different strings") }
        }
    }

    /// The results may repeat the text a few times over (sentence texts, premises, complements, event
    /// texts, each JSON-escaped: a control character takes six bytes), but a response must grow
    /// linearly with its text: the service caps texts at 64 KiB, and the results are also what the
    /// caches store. 64× is far above what real texts give (about 10×); the 16 KiB cover the
    /// fixed members of an empty text's results (about 1.2 KB).
    static let maxAmplification = 64
    static let fixedOverhead = 16 * 1024

    static func analyze(_ text: String, engine: Engine, bounded: Bool = true) throws(Violation) {
        let results = engine.analyze(text)
        guard results.emotion != nil, results.reasoning != nil, results.values != nil, results.theoryOfMind != nil, results.narrative != nil
        else { throw Violation("a module gave no result") }
        let json = results.json()
        let limit = maxAmplification * text.utf8.count + fixedOverhead
        // Unbounded (a known blow-up not fixed yet): not worth parsing megabytes of output either.
        if !bounded, json.count > limit { return }
        if json.count > limit {
            func size(_ write: (inout JSONWriter) -> Void) -> Int {
                var w = JSONWriter()
                write(&w)
                return w.count
            }
            let sizes = [
                "emotion": size { results.emotion?.write(to: &$0) }, "reasoning": size { results.reasoning?.write(to: &$0) },
                "values": size { results.values?.write(to: &$0) }, "theory_of_mind": size { results.theoryOfMind?.write(to: &$0) },
                "narrative": size { results.narrative?.write(to: &$0) },
            ]
            let perModule = sizes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            throw Violation("\(json.count) bytes of results for \(text.utf8.count) bytes of text, over the linear bound \(limit) (\(perModule))")
        }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: Data(json)) } catch {
            throw Violation("the results' JSON does not parse (\(error)): \(String(decoding: json.prefix(512), as: UTF8.self))")
        }
        guard let object = parsed as? [String: Any], object.count == Module.allCases.count else {
            throw Violation("the results' JSON is not an object with one member per module")
        }
    }

    // MARK: - model (Fuzz/Sources/FuzzModel)

    /// Any bytes decode to a model or throw `CompiledModel.LoadError` (the typed throw guarantees the
    /// error type); a model that decodes re-encodes to one that decodes to the same checksum.
    /// Mutated files almost never match the payload checksum, so each input is also tried with that
    /// checksum corrected: the tables behind it are then reachable.
    static func model(_ bytes: [UInt8]) throws(Violation) {
        try modelOnce(bytes)
        guard bytes.count >= CompiledModel.headerSize else { return }
        var patched = bytes
        var hash = FNV1a()
        hash.mix(bytes[CompiledModel.headerSize...])
        withUnsafeBytes(of: hash.value.littleEndian) { patched.replaceSubrange(56..<64, with: $0) }
        if patched != bytes { try modelOnce(patched) }
    }

    static func modelOnce(_ bytes: [UInt8]) throws(Violation) {
        let data = Data(bytes)
        let header = try? CompiledModel.header(of: data, origin: "fuzz")
        let model: ModuleModel
        let decodedHeader: CompiledModel.Header
        do { (model, decodedHeader) = try CompiledModel.decode(data, origin: "fuzz") } catch {
            guard !error.message.isEmpty else { throw Violation("a LoadError without a message (\(error.code))") }
            return
        }
        guard header == decodedHeader else { throw Violation("header(of:) and decode disagree") }
        let again = CompiledModel.encode(model, accuracy: decodedHeader.accuracy, minFrequency: decodedHeader.minFrequency)
        let copy: ModuleModel
        let copyHeader: CompiledModel.Header
        do { (copy, copyHeader) = try CompiledModel.decode(again, origin: "re-encoded") } catch {
            throw Violation("a decoded model re-encodes to a file that does not load: \(error)")
        }
        // Not `==` on patterns and weights: a file may hold NaN (weights are in the checksum as bit
        // patterns; frequencies are not in it at all), and NaN is not equal to itself.
        func same(_ a: Float, _ b: Float) -> Bool { a == b || (a.isNaN && b.isNaN) }
        guard copy.checksum == model.checksum, copyHeader.module == decodedHeader.module, copyHeader.precision == decodedHeader.precision,
            copy.patterns.count == model.patterns.count,
            zip(copy.patterns, model.patterns).allSatisfy({
                $0.tokens == $1.tokens && $0.label == $1.label && $0.flags == $1.flags && same($0.frequency, $1.frequency)
            })
        else { throw Violation("a decoded model re-encodes to a different model") }
    }

    // MARK: - json (Fuzz/Sources/FuzzJSON)

    /// The request bodies: every body type through `JSONIO.decode` and the validation its route
    /// applies next. Any input gives a value or an `APIError` with a 4xx code; the error envelope
    /// rendered from it is JSON.
    static func json(_ bytes: [UInt8]) throws(Violation) {
        _ = DuplicateKeys.first(in: bytes)  // Documented for valid JSON only; must still terminate on any bytes.
        let limits = TierLimits.premiumDefault
        try body(AnalyzeBody.self, bytes) { body in
            _ = try Validation.modules(body.modules, field: "modules")
            try Validation.text(body.text, field: "text", limits: limits, tier: .premium)
        }
        try body(TextBody.self, bytes) { body in
            try Validation.text(body.text, field: "text", limits: limits, tier: .premium)
        }
        try body(BatchBody.self, bytes) { body in
            let defaults = try Validation.modules(body.modules, field: "modules")
            for (i, item) in body.items.enumerated() {
                // SomaAPI.batch: an item's own failure is that item's error, not the batch's.
                try expectAPIError("batch item") {
                    _ = try item.modules.map { try Validation.modules($0, field: "items[\(i)].modules") } ?? defaults
                    try Validation.text(item.text, field: "items[\(i)].text", limits: limits, tier: .premium)
                }
            }
        }
        try body(WarmBody.self, bytes) { body in
            _ = try Validation.modules(body.modules, field: "modules")
        }
    }

    static func body<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], validate: (T) throws -> Void) throws(Violation) {
        try expectAPIError("\(T.self)") {
            let value = try JSONIO.decode(T.self, from: bytes)
            try validate(value)
        }
    }

    static func expectAPIError(_ what: String, _ body: () throws -> Void) throws(Violation) {
        do { try body() } catch let error as APIError {
            guard (400..<500).contains(error.code.status) else { throw Violation("\(what): \(error.code.rawValue) is not a client error") }
            guard (try? JSONSerialization.jsonObject(with: Data(JSONIO.errorBody(error)))) != nil else {
                throw Violation("\(what): the error envelope is not JSON")
            }
        } catch {
            throw Violation("\(what): \(type(of: error)) instead of an APIError: \(error)")
        }
    }

    // MARK: - cursor (Fuzz/Sources/FuzzCursor)

    /// `EntryCursor(decoding:)` on any string: `StoreError(.invalidCursor)` or a cursor whose
    /// encoding is the input and decodes to the same cursor. And in the other direction, a cursor
    /// built from the input's bytes as the store builds them (an ASCII id) survives the round trip.
    static func cursor(_ bytes: [UInt8]) throws(Violation) {
        try decodeCursor(String(decoding: bytes, as: UTF8.self))
        if bytes.count >= 8 {
            let milliseconds = bytes.prefix(8).withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(as: Int64.self)) }
            let id = String(decoding: bytes.dropFirst(8).map { 0x21 + $0 % 0x5E }, as: UTF8.self)  // printable ASCII
            let cursor = EntryCursor(createdAtMilliseconds: milliseconds, id: id)
            let encoded = cursor.encoded
            if !id.isEmpty, encoded.utf8.count <= EntryCursor.maxEncodedLength {
                let decoded: EntryCursor
                do { decoded = try EntryCursor(decoding: encoded) } catch {
                    throw Violation("cursor (\(milliseconds), \(id)) does not decode from its own encoding \(encoded): \(error)")
                }
                guard decoded == cursor else {
                    throw Violation("cursor (\(milliseconds), \(id)) round-trips to (\(decoded.createdAtMilliseconds), \(decoded.id))")
                }
            }
        }
    }

    static func decodeCursor(_ string: String) throws(Violation) {
        let cursor: EntryCursor
        do { cursor = try EntryCursor(decoding: string) } catch {
            guard error.code == .invalidCursor else { throw Violation("\(error.code) instead of invalidCursor for \(string.debugDescription)") }
            return
        }
        let encoded = cursor.encoded
        guard encoded == string else { throw Violation("\(string.debugDescription) decoded but re-encodes to \(encoded)") }
        let again: EntryCursor
        do { again = try EntryCursor(decoding: encoded) } catch {
            throw Violation("\(encoded), the encoding of a decoded cursor, does not decode: \(error)")
        }
        guard again == cursor else { throw Violation("\(encoded) decodes to a different cursor the second time") }
    }

    // MARK: - idempotency (Fuzz/Sources/FuzzIdempotency)

    /// The Idempotency-Key header from the wire to its check. Each line of the input is one header
    /// value as NIO's HTTP/1 parser hands it over; they go through the conversion
    /// Hummingbird's HTTP/1 channel applies (NIOHTTPTypesHTTP1) and the lookup `POST /v1/entries`
    /// makes (`headers[fields:]`) into `Validation.idempotencyKey`. No field gives no key; exactly
    /// one of 1 to 255 printable ASCII characters gives that key; anything else is a 400
    /// `invalid_request` naming the header.
    static func idempotency(_ bytes: [UInt8]) throws(Violation) {
        var headers = HTTPHeaders()
        if !bytes.isEmpty {
            // Lines end in "\n" (the last one may not): "" is no field, "\n" one empty field.
            let lines = bytes.last == UInt8(ascii: "\n") ? bytes.dropLast() : bytes[...]
            for line in lines.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                headers.add(name: "Idempotency-Key", value: String(decoding: line, as: UTF8.self))
            }
        }
        let fields = HTTPFields(headers, splitCookie: false)[fields: .idempotencyKey]
        let valid =
            fields.count == 1
            && (1...255).contains(fields[0].value.utf8.count)
            && fields[0].value.unicodeScalars.allSatisfy { (0x20..<0x7F).contains($0.value) }
        let key: String?
        do { key = try Validation.idempotencyKey(fields) } catch let error as APIError {
            guard error.code == .invalidRequest, error.field == "Idempotency-Key" else {
                throw Violation("Idempotency-Key: \(error.code.rawValue) on \(error.field ?? "no field") instead of invalid_request")
            }
            guard !valid, !fields.isEmpty else { throw Violation("Idempotency-Key \(fields.map(\.value)) refused: \(error.message)") }
            return
        } catch {
            throw Violation("Idempotency-Key: \(type(of: error)) instead of an APIError: \(error)")
        }
        if fields.isEmpty {
            guard key == nil else { throw Violation("a key without an Idempotency-Key field") }
        } else {
            guard valid, key == fields[0].value else { throw Violation("Idempotency-Key \(fields.map(\.value)) accepted as \(key.debugDescription)") }
        }
    }
}

#if !SOMA_FUZZ
    /// Every file of Fixtures/fuzz/<target>/ through its target's per-input code.
    @Suite struct FuzzCorpusTests {
        static let corpus = Fixtures.root.appendingPathComponent("Fixtures/fuzz")

        static func files(_ target: FuzzInput.Target) -> [URL] {
            let dir = corpus.appendingPathComponent(target.rawValue)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
        }

        @Test(arguments: FuzzInput.Target.allCases)
        func replaysTheCorpus(target: FuzzInput.Target) throws {
            let files = Self.files(target)
            #expect(!files.isEmpty, "Fixtures/fuzz/\(target.rawValue) holds no inputs")
            for file in files {
                let bytes = try [UInt8](Data(contentsOf: file))
                #expect(throws: Never.self, "\(target.rawValue)/\(file.lastPathComponent)") {
                    try FuzzInput.run(target, bytes, engine: Fixtures.engine)
                }
            }
        }
    }
#endif
