// libFuzzer target `model`: CompiledModel.decode on any bytes (a LoadError, never a crash, hang or
// huge allocation). The per-input code is FuzzInput.model (Tests/Unit/FuzzCorpusTests.swift).
//
// With SOMA_FUZZ_MODEL_SEEDS=DIR, start-up first writes current compiled models into DIR: small
// ones (the first patterns of each module's committed model, FP32 and FP16) that fit -max_len,
// so the working corpus always holds files of the format this build reads.
import Foundation
import Soma

@testable import FuzzInput

@_cdecl("LLVMFuzzerInitialize")
public func fuzzModelInitialize(
    _ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
    guard let dir = ProcessInfo.processInfo.environment["SOMA_FUZZ_MODEL_SEEDS"], !dir.isEmpty else { return 0 }
    do {
        let out = URL(fileURLWithPath: dir, isDirectory: true)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let models = try ModelSet.load(from: ModelSet.defaultDirectory())
        for module in Module.allCases {
            let small = models[module].filtered { i, _ in i < 24 }
            for (precision, model) in [("fp32", small), ("fp16", small.converted(to: .fp16))] {
                let data = CompiledModel.encode(model, accuracy: 0.75, minFrequency: 0.001)
                try data.write(to: out.appendingPathComponent("generated-\(module.rawValue)-\(precision).somamodel"))
            }
        }
    } catch {
        fatalError("cannot write model seeds to \(dir): \(error)")
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzModel(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do { try FuzzInput.model(bytes) } catch { fatalError("model: \(error)") }
    return 0
}
