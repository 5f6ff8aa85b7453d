/// The boundary where bytes from outside become text: invalid UTF-8 is refused here with a
/// clear error, so nothing past it ever sees a replacement character it did not write.
public enum TextInput {
    /// Why a piece of input was refused.
    public struct Error: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        public enum Code: String, Sendable { case invalidUTF8 = "invalid_utf8" }
        public var code: Code
        /// Byte offset of the first byte that is not valid UTF-8.
        public var offset: Int
        public var description: String { "input is not valid UTF-8 (first bad byte at offset \(offset))" }

        public init(code: Code, offset: Int) {
            self.code = code
            self.offset = offset
        }
    }

    /// Decodes `bytes` as UTF-8, refusing invalid sequences instead of repairing them.
    public static func decode(_ bytes: some Collection<UInt8>) throws(Error) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        throw Error(code: .invalidUTF8, offset: firstInvalidOffset(Array(bytes)))
    }

    static func firstInvalidOffset(_ bytes: [UInt8]) -> Int {
        var offset = 0
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): offset += UTF8.width(scalar)
            case .emptyInput: return bytes.count
            case .error: return offset
            }
        }
    }
}
