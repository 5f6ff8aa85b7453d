import Foundation
import Soma
import Testing

struct CompiledModelTests {
    static let sample = try! ModelSource.parse(
        .emotion,
        text: """
            happy\tlex\tvalence=2.7 joy=0.9 arousal=0.6\tprotected
            very\tdegree\tscale=0.293\t-
            not\tnegator\t-\tprotected
            can't wait\tlex\tvalence=1.5 anticipation=0.95\t-
            """)

    @Test func fp32RoundTripIsExact() throws {
        let data = CompiledModel.encode(Self.sample, accuracy: 0.9, minFrequency: 0.001)
        let (model, header) = try CompiledModel.decode(data)
        #expect(model.patterns == Self.sample.patterns)
        #expect(model.weights == Self.sample.weights)
        #expect(model.checksum == Self.sample.checksum)
        #expect(header.module == .emotion)
        #expect(header.precision == .fp32)
        #expect(header.accuracy == 0.9)
        #expect(header.minFrequency == 0.001)
    }

    @Test func fp16StoresRoundedWeightsAndReadsThemAsFloat() throws {
        let half = Self.sample.converted(to: .fp16)
        let (model, header) = try CompiledModel.decode(CompiledModel.encode(half))
        #expect(header.precision == .fp16)
        #expect(model.weights.precision == .fp16)
        #expect(model.weight(0, "valence") == Float(Float16(2.7)))
        #expect(abs(model.weight(0, "valence") - 2.7) < 0.002)
        #expect(model.checksum != Self.sample.checksum, "fp16 and fp32 models must not share cache keys")
        #expect(CompiledModel.encode(half).count < CompiledModel.encode(Self.sample).count)
    }

    func refusal(_ data: Data) -> CompiledModel.LoadError.Code? {
        do {
            _ = try CompiledModel.decode(data, origin: "test")
            return nil
        } catch {
            return error.code
        }
    }

    @Test func emptyFileIsRefused() {
        #expect(refusal(Data()) == .empty)
    }

    @Test func wrongMagicIsRefused() {
        var data = CompiledModel.encode(Self.sample)
        data[0] = UInt8(ascii: "X")
        #expect(refusal(data) == .badMagic)
        #expect(refusal(Data("{\"json\": true}".utf8)) == .badMagic)
    }

    @Test func wrongVersionIsRefused() {
        var data = CompiledModel.encode(Self.sample)
        data[8] = 99
        #expect(refusal(data) == .unsupportedVersion)
    }

    @Test func everyTruncationIsRefusedWithoutCrashing() {
        let data = CompiledModel.encode(Self.sample)
        for length in 1..<data.count {
            let code = refusal(data.prefix(length))
            #expect(code == .truncated || code == .corrupt, "prefix \(length): \(String(describing: code))")
        }
    }

    @Test func everyFlippedPayloadByteIsRefused() {
        let data = CompiledModel.encode(Self.sample)
        for offset in 64..<data.count {
            var bad = data
            bad[offset] ^= 0x5A
            #expect(refusal(bad) != nil, "flipped byte \(offset) was accepted")
        }
    }

    @Test func wrongModuleIsRefused() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("soma-\(UUID().uuidString).somamodel")
        defer { try? FileManager.default.removeItem(at: url) }
        try CompiledModel.write(Self.sample, to: url)
        #expect(throws: CompiledModel.LoadError.self) { try CompiledModel.load(url, expecting: .values) }
        #expect(try CompiledModel.load(url, expecting: .emotion).0.patterns.count == 4)
    }
}
