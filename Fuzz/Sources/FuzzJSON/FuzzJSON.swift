// libFuzzer target `json`: a request body through JSONIO.decode for each body type, DuplicateKeys
// and the validation the routes apply. The per-input code is FuzzInput.json
// (Tests/Unit/FuzzCorpusTests.swift).
@testable import FuzzInput

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do { try FuzzInput.json(bytes) } catch { fatalError("json: \(error)") }
    return 0
}
