import Dispatch
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// One raw HTTP/1.1 exchange on loopback: what a client that frames its body badly sends, which
/// no HTTP client library will produce. Returns the status line and the body. Blocking socket
/// calls run on a Dispatch thread, never on the cooperative pool the server's handlers need.
private func rawExchange(port: Int, _ request: [UInt8]) async throws -> (status: String, body: String) {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try blockingExchange(port: port, request) })
        }
    }
}

private func blockingExchange(port: Int, _ request: [UInt8]) throws -> (status: String, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    var sent = 0
    while sent < request.count {
        let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { break }  // the server may answer and close before reading it all
        sent += n
    }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        received += buffer[0..<n]
        let text = String(decoding: received, as: UTF8.self)
        if let head = text.range(of: "\r\n\r\n"), let length = text.range(of: "Content-Length: ", options: .caseInsensitive),
            let end = text[length.upperBound...].firstIndex(of: "\r"), let count = Int(text[length.upperBound..<end]),
            received.count >= text.utf8.distance(from: text.startIndex, to: head.upperBound) + count
        {
            break
        }
    }
    let text = String(decoding: received, as: UTF8.self)
    let status = String(text.prefix { $0 != "\r" })
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (status, body)
}

private func chunked(_ path: String, _ chunks: [[UInt8]]) -> [UInt8] {
    Array("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        + chunks.flatMap { $0 }
}

/// Chunked bodies past the cap or with broken chunk sizes are the client's fault: 413 or 400 with
/// the JSON error, never a 500 that burns the error budget. Against the real `soma serve` binary,
/// over raw loopback sockets.
@Suite("HTTP: body framing", .serialized, .timeLimit(.minutes(2))) struct FramingTests {
    @Test(arguments: ["/v1/analyze", "/v1/entries"])
    func aChunkedBodyPastTheCapIs413(path: String) async throws {
        let soma = try await SomaProcess.start(instance: "framing", environment: [:])
        let port = soma.port
        do {
            let body = Array(#"{"text":""#.utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 300_000) + Array(#""}"#.utf8)
            var chunks: [[UInt8]] = stride(from: 0, to: body.count, by: 8192).map { start in
                let piece = body[start..<min(start + 8192, body.count)]
                return Array(String(piece.count, radix: 16).utf8) + Array("\r\n".utf8) + piece + Array("\r\n".utf8)
            }
            chunks.append(Array("0\r\n\r\n".utf8))
            let answer = try await rawExchange(port: port, chunked(path, chunks))
            #expect(answer.status.hasPrefix("HTTP/1.1 413"))
            #expect(answer.body.contains(#""code":"payload_too_large""#))
        }
        #expect(!soma.logText.contains("unhandled error"))
        #expect(await soma.stop() == 0, "a clean exit on SIGTERM: no malformed connection holds shutdown")
    }

    @Test(arguments: ["zz", "-1c", "ffffffffffffffffffffff"])
    func aBrokenChunkSizeIs400(size: String) async throws {
        let soma = try await SomaProcess.start(instance: "framing", environment: [:])
        let answer = try await rawExchange(port: soma.port, chunked("/v1/analyze", [Array("\(size)\r\n{\"text\":\"hi\"}\r\n0\r\n\r\n".utf8)]))
        #expect(answer.status.hasPrefix("HTTP/1.1 400"))
        #expect(answer.body.contains(#""code":"invalid_request""#))
        #expect(!soma.logText.contains("unhandled error"))
        #expect(await soma.stop() == 0, "a clean exit on SIGTERM: no malformed connection holds shutdown")
    }
}
