// libFuzzer target `cursor`: EntryCursor(decoding:) and its round trip. The per-input code is
// FuzzInput.cursor (Tests/Unit/FuzzCorpusTests.swift).
@testable import FuzzInput

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCursor(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do { try FuzzInput.cursor(bytes) } catch { fatalError("cursor: \(error)") }
    return 0
}
