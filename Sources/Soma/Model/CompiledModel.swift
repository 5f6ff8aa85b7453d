public import Foundation

/// The compiled, versioned binary form of a module's model, written by `soma optimize` and
/// memory-mapped at load: no text parsing on the serving path.
///
/// Layout (little-endian):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic `SOMAMODL` |
/// | 8 | 2 | format version (1) |
/// | 10 | 1 | module (index in `Module.allCases`) |
/// | 11 | 1 | precision (0 = FP32, 1 = FP16) |
/// | 12 | 4 | pattern count |
/// | 16 | 2 | dimension count |
/// | 18 | 2 | label count |
/// | 20 | 4 | token count (the string table) |
/// | 24 | 8 | model checksum (`ModuleModel.checksum` of the table as stored) |
/// | 32 | 4 | held-out accuracy (Float32, NaN when not measured) |
/// | 36 | 4 | minimum frequency used for pruning (Float32) |
/// | 40 | 2 | flag-name count |
/// | 42 | 14 | reserved (zero) |
/// | 56 | 8 | payload checksum (FNV-1a 64 over every byte after the header) |
///
/// Then: the string table (token count × `u16 length, bytes`), the labels (same encoding), the
/// flag names (same encoding), the pattern table (per pattern: `u8 token count, u16 label, u16 flag
/// mask, token count × u32 token id`), the weights (pattern count × dimensions, FP32 or FP16) and
/// the frequencies (pattern count, same precision). FP32 and FP16 files differ only in the last two.
public enum CompiledModel {
    public static let magic: [UInt8] = Array("SOMAMODL".utf8)
    public static let formatVersion: UInt16 = 1
    static let headerSize = 64

    /// Why a file was refused.
    public struct LoadError: Error, CustomStringConvertible, Sendable, Equatable {
        public enum Code: String, Sendable { case empty, truncated, badMagic, unsupportedVersion, corrupt, wrongModule, unreadable }
        public var code: Code
        public var message: String
        public var description: String { message }
    }

    /// What the header says, readable without decoding the tables.
    public struct Header: Sendable, Equatable {
        public var module: Module
        public var precision: WeightTable.Precision
        public var patternCount: Int
        public var checksum: UInt64
        /// Held-out accuracy recorded when the file was compiled, if measured.
        public var accuracy: Float?
        public var minFrequency: Float
    }

    // MARK: - Writing

    /// Serialises `model` in its own precision.
    public static func encode(_ model: ModuleModel, accuracy: Float? = nil, minFrequency: Float = 0) -> Data {
        var payload = ByteWriter()
        var tokenIDs: [String: UInt32] = [:]
        var tokens: [String] = []
        var labelIDs: [String: UInt16] = [:]
        var labels: [String] = []
        var flagBits: [String: UInt16] = [:]
        var flagNames: [String] = []
        for p in model.patterns {
            for t in p.tokens where tokenIDs[t] == nil {
                tokenIDs[t] = UInt32(tokens.count)
                tokens.append(t)
            }
            if labelIDs[p.label] == nil {
                labelIDs[p.label] = UInt16(labels.count)
                labels.append(p.label)
            }
            for f in p.flags.sorted() where flagBits[f] == nil {
                precondition(flagNames.count < 16, "at most 16 distinct flags per model")
                flagBits[f] = UInt16(1) << UInt16(flagNames.count)
                flagNames.append(f)
            }
        }
        for list in [tokens, labels, flagNames] {
            for s in list { payload.string(s) }
        }
        for p in model.patterns {
            payload.u8(UInt8(p.tokens.count))
            payload.u16(labelIDs[p.label]!)
            payload.u16(p.flags.reduce(0) { $0 | flagBits[$1]! })
            for t in p.tokens { payload.u32(tokenIDs[t]!) }
        }
        let precision = model.weights.precision
        for i in 0..<model.weights.count {
            for d in 0..<model.weights.dimensions { payload.weight(model.weights[i, d], precision) }
        }
        for p in model.patterns { payload.weight(p.frequency, precision) }

        var header = ByteWriter()
        header.bytes(magic)
        header.u16(formatVersion)
        header.u8(UInt8(Module.allCases.firstIndex(of: model.module)!))
        header.u8(precision == .fp32 ? 0 : 1)
        header.u32(UInt32(model.patterns.count))
        header.u16(UInt16(model.weights.dimensions))
        header.u16(UInt16(labels.count))
        header.u32(UInt32(tokens.count))
        header.u64(model.checksum)
        header.f32(accuracy ?? .nan)
        header.f32(minFrequency)
        header.u16(UInt16(flagNames.count))
        header.bytes([UInt8](repeating: 0, count: 14))
        header.u64(FNV1a.hash(payload.data))
        precondition(header.data.count == headerSize)
        return header.data + payload.data
    }

    /// Writes `model` to `url` atomically.
    public static func write(_ model: ModuleModel, to url: URL, accuracy: Float? = nil, minFrequency: Float = 0) throws {
        try encode(model, accuracy: accuracy, minFrequency: minFrequency).write(to: url, options: .atomic)
    }

    /// The file name of a module's compiled model.
    public static func fileName(_ module: Module) -> String { "\(module.rawValue).somamodel" }

    // MARK: - Reading

    /// Memory-maps `url` and decodes it; `expected` guards against a file of another module.
    public static func load(_ url: URL, expecting expected: Module? = nil) throws(LoadError) -> (ModuleModel, Header) {
        let data: Data
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw LoadError(code: .unreadable, message: "\(url.path): cannot read (\(error.localizedDescription))")
        }
        return try decode(data, origin: url.path, expecting: expected)
    }

    public static func header(of data: Data, origin: String = "<data>") throws(LoadError) -> Header {
        try withBytes(data, origin: origin) { raw throws(LoadError) in
            var r = ByteReader(raw, origin: origin)
            return try readHeader(&r, total: raw.count).header
        }
    }

    /// `Data.withUnsafeBytes` with a typed error.
    static func withBytes<R>(_ data: Data, origin: String, _ body: (UnsafeRawBufferPointer) throws(LoadError) -> R) throws(LoadError) -> R {
        let result: Result<R, LoadError> = data.withUnsafeBytes { raw in
            do throws(LoadError) { return .success(try body(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    public static func decode(_ data: Data, origin: String = "<data>", expecting expected: Module? = nil) throws(LoadError) -> (ModuleModel, Header) {
        try withBytes(data, origin: origin) { raw throws(LoadError) -> (ModuleModel, Header) in
            var r = ByteReader(raw, origin: origin)
            let (header, counts) = try readHeader(&r, total: raw.count)
            if let expected, expected != header.module {
                throw LoadError(code: .wrongModule, message: "\(origin): holds module \(header.module.rawValue), expected \(expected.rawValue)")
            }
            let payload = UnsafeRawBufferPointer(rebasing: raw[headerSize...])
            guard FNV1a.hash(payload) == counts.payloadChecksum else {
                throw LoadError(code: .corrupt, message: "\(origin): payload checksum mismatch (file corrupt)")
            }
            var tokens: [String] = []
            tokens.reserveCapacity(counts.tokens)
            for _ in 0..<counts.tokens { tokens.append(try r.string()) }
            var labels: [String] = []
            for _ in 0..<counts.labels { labels.append(try r.string()) }
            var flagNames: [String] = []
            for _ in 0..<counts.flags { flagNames.append(try r.string()) }
            var patterns: [Pattern] = []
            patterns.reserveCapacity(header.patternCount)
            for _ in 0..<header.patternCount {
                let n = Int(try r.u8())
                let label = Int(try r.u16())
                let mask = try r.u16()
                guard n > 0, label < labels.count else { throw r.corrupt("pattern table") }
                var ts: [String] = []
                ts.reserveCapacity(n)
                for _ in 0..<n {
                    let id = Int(try r.u32())
                    guard id < tokens.count else { throw r.corrupt("token id") }
                    ts.append(tokens[id])
                }
                var flags: Set<String> = []
                for (bit, name) in flagNames.enumerated() where mask & (1 << UInt16(bit)) != 0 { flags.insert(name) }
                patterns.append(Pattern(tokens: ts, label: labels[label], flags: flags))
            }
            let cells = header.patternCount * counts.dimensions
            let weights: WeightTable
            switch header.precision {
            case .fp32:
                var w = [Float](); w.reserveCapacity(cells)
                for _ in 0..<cells { w.append(try r.f32()) }
                weights = WeightTable(dimensions: counts.dimensions, count: header.patternCount, storage: .fp32(w))
            case .fp16:
                var w = [Float16](); w.reserveCapacity(cells)
                for _ in 0..<cells { w.append(try r.f16()) }
                weights = WeightTable(dimensions: counts.dimensions, count: header.patternCount, storage: .fp16(w))
            }
            for i in 0..<patterns.count {
                patterns[i].frequency = header.precision == .fp32 ? try r.f32() : Float(try r.f16())
            }
            guard r.offset == raw.count else { throw r.corrupt("trailing bytes") }
            guard counts.dimensions == header.module.dimensions.count else {
                throw LoadError(
                    code: .corrupt,
                    message: "\(origin): \(counts.dimensions) weight dimensions, module \(header.module.rawValue) has \(header.module.dimensions.count)")
            }
            let classes = Set(patterns.map(\.label)).count
            guard classes <= ModuleModel.maxClasses else {
                throw LoadError(code: .corrupt, message: "\(origin): \(classes) pattern classes, at most \(ModuleModel.maxClasses) are allowed")
            }
            let model = ModuleModel(module: header.module, patterns: patterns, weights: weights)
            guard model.checksum == header.checksum else {
                throw LoadError(code: .corrupt, message: "\(origin): model checksum mismatch")
            }
            return (model, header)
        }
    }

    struct Counts { var dimensions: Int; var labels: Int; var tokens: Int; var flags: Int; var payloadChecksum: UInt64 }

    static func readHeader(_ r: inout ByteReader, total: Int) throws(LoadError) -> (header: Header, counts: Counts) {
        guard total > 0 else { throw LoadError(code: .empty, message: "\(r.origin): empty file") }
        let prefix = Array(r.raw[0..<min(total, magic.count)])
        guard prefix == Array(magic.prefix(prefix.count)) else {
            throw LoadError(code: .badMagic, message: "\(r.origin): not a Soma model (bad magic)")
        }
        guard total >= headerSize else { throw LoadError(code: .truncated, message: "\(r.origin): truncated header (\(total) bytes)") }
        r.offset = magic.count
        let version = try r.u16()
        guard version == formatVersion else {
            throw LoadError(code: .unsupportedVersion, message: "\(r.origin): format version \(version), this build reads \(formatVersion)")
        }
        let moduleIndex = Int(try r.u8())
        let precisionCode = try r.u8()
        guard moduleIndex < Module.allCases.count, precisionCode <= 1 else { throw r.corrupt("header") }
        let patternCount = Int(try r.u32())
        let dimensions = Int(try r.u16())
        let labels = Int(try r.u16())
        let tokens = Int(try r.u32())
        let checksum = try r.u64()
        let accuracy = try r.f32()
        let minFrequency = try r.f32()
        let flags = Int(try r.u16())
        r.offset = headerSize - 8
        let payloadChecksum = try r.u64()
        let precision: WeightTable.Precision = precisionCode == 0 ? .fp32 : .fp16
        // The smallest payload these counts imply; a shorter file is truncated.
        let minimum = headerSize + (tokens + labels + flags) * 2 + patternCount * 9 + patternCount * (dimensions + 1) * precision.bytesPerWeight
        guard total >= minimum else { throw LoadError(code: .truncated, message: "\(r.origin): truncated (\(total) bytes, at least \(minimum) expected)") }
        return (
            Header(
                module: Module.allCases[moduleIndex], precision: precision, patternCount: patternCount, checksum: checksum,
                accuracy: accuracy.isNaN ? nil : accuracy, minFrequency: minFrequency),
            Counts(dimensions: dimensions, labels: labels, tokens: tokens, flags: flags, payloadChecksum: payloadChecksum)
        )
    }

}

/// Little-endian writer for the compiled format.
struct ByteWriter {
    var data = Data()
    mutating func bytes(_ b: [UInt8]) { data.append(contentsOf: b) }
    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }
    mutating func weight(_ v: Float, _ p: WeightTable.Precision) {
        if p == .fp32 { f32(v) } else { u16(Float16(v).bitPattern) }
    }
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        precondition(utf8.count <= Int(UInt16.max))
        u16(UInt16(utf8.count))
        data.append(contentsOf: utf8)
    }
}

/// Bounds-checked little-endian reader: every read past the end is a `.truncated` error, never a crash.
struct ByteReader {
    let raw: UnsafeRawBufferPointer
    let origin: String
    var offset = 0

    init(_ raw: UnsafeRawBufferPointer, origin: String) {
        self.raw = raw
        self.origin = origin
    }

    func corrupt(_ what: String) -> CompiledModel.LoadError {
        .init(code: .corrupt, message: "\(origin): corrupt \(what) at byte \(offset)")
    }

    mutating func take(_ n: Int) throws(CompiledModel.LoadError) -> UnsafeRawBufferPointer {
        guard n >= 0, offset + n <= raw.count else {
            throw CompiledModel.LoadError(code: .truncated, message: "\(origin): truncated at byte \(offset) (needs \(n) more)")
        }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)])
    }

    mutating func u8() throws(CompiledModel.LoadError) -> UInt8 { try take(1)[0] }
    mutating func u16() throws(CompiledModel.LoadError) -> UInt16 { UInt16(littleEndian: try take(2).loadUnaligned(as: UInt16.self)) }
    mutating func u32() throws(CompiledModel.LoadError) -> UInt32 { UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self)) }
    mutating func u64() throws(CompiledModel.LoadError) -> UInt64 { UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self)) }
    mutating func f32() throws(CompiledModel.LoadError) -> Float { Float(bitPattern: try u32()) }
    mutating func f16() throws(CompiledModel.LoadError) -> Float16 { Float16(bitPattern: try u16()) }
    mutating func string() throws(CompiledModel.LoadError) -> String {
        let n = Int(try u16())
        let bytes = try take(n)
        guard let s = String(validating: bytes, as: UTF8.self) else { throw corrupt("string") }
        return s
    }
}
