// libFuzzer target `text`: bytes → String → Engine.analyze (all five modules) → the results' JSON.
// The per-input code is FuzzInput.text (Tests/Unit/FuzzCorpusTests.swift).
//
// SOMA_FUZZ_TEXT_UNBOUNDED=1 drops the bound on the results' size (FuzzInput.maxAmplification):
// to keep looking for other failures while a known output blow-up is not fixed yet.
import Foundation
import Soma

@testable import FuzzInput

/// The committed models (SOMA_MODEL_DIR, else Fixtures/models), loaded once as the tests do.
let engine: Engine = {
    let directory = ModelSet.defaultDirectory()
    do { return Engine(models: try ModelSet.load(from: directory)) } catch { fatalError("models do not load from \(directory.path): \(error)") }
}()

let bounded = ProcessInfo.processInfo.environment["SOMA_FUZZ_TEXT_UNBOUNDED"] != "1"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzText(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do { try FuzzInput.text(bytes, engine: engine, bounded: bounded) } catch { fatalError("text: \(error)") }
    return 0
}
