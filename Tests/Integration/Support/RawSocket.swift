import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A blocking TCP connection to a loopback port, for what no HTTP client library sends: broken
/// framing, headers that never finish, bodies a byte at a time. Blocking calls belong on a
/// Dispatch thread (`RawSocket.offPool`), never on the cooperative pool the server may share.
final class RawSocket {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit { close(fd) }

    /// Sends everything it can; false once the server has closed or reset the connection.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Reads until the server closes the connection or `timeout` passes; `closed` is false when
    /// the connection was still open at the end.
    func readUntilClosed(timeout: Duration) -> (bytes: [UInt8], closed: Bool) {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let clock = ContinuousClock()
        let end = clock.now + timeout
        while clock.now < end {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = end - clock.now
            let ms = max(1, Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&poller, 1, ms) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return (received, true) }
            received += buffer[0..<n]
        }
        return (received, false)
    }

    /// One response whose length is given by Content-Length (the connection may stay open).
    func readResponse(timeout: Duration) -> (status: String, head: String, body: String) {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var receiveTimeout = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receiveTimeout, socklen_t(MemoryLayout<timeval>.size))
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received += buffer[0..<n]
            let text = String(decoding: received, as: UTF8.self)
            if let head = text.range(of: "\r\n\r\n"), let length = text.range(of: "Content-Length: ", options: .caseInsensitive),
                let end = text[length.upperBound...].firstIndex(of: "\r\n"), let count = Int(text[length.upperBound..<end]),
                received.count >= text.utf8.distance(from: text.startIndex, to: head.upperBound) + count
            {
                break
            }
        }
        let text = String(decoding: received, as: UTF8.self)
        // "\r\n" is one Character in Swift: split on it, never on "\r".
        let status = text.components(separatedBy: "\r\n").first ?? ""
        let split = text.range(of: "\r\n\r\n")
        return (status, split.map { String(text[..<$0.lowerBound]) } ?? text, split.map { String(text[$0.upperBound...]) } ?? "")
    }

    /// Runs blocking socket work on a Dispatch thread.
    static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// One raw exchange: connect, send `request`, read one response.
    static func exchange(port: Int, _ request: [UInt8]) async throws -> (status: String, body: String) {
        try await offPool {
            let socket = try RawSocket(port: port)
            socket.send(request)  // the server may answer and close before reading it all
            let answer = socket.readResponse(timeout: .seconds(5))
            return (answer.status, answer.body)
        }
    }
}
