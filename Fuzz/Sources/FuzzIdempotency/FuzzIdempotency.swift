// libFuzzer target `idempotency`: Idempotency-Key header values from the wire (NIO's HTTP/1 headers,
// Hummingbird's conversion to HTTPFields) to `Validation.idempotencyKey`. The per-input code is
// FuzzInput.idempotency (Tests/Unit/FuzzCorpusTests.swift).
@testable import FuzzInput

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIdempotency(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do { try FuzzInput.idempotency(bytes) } catch { fatalError("idempotency: \(error)") }
    return 0
}
