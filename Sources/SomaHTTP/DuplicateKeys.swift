import Foundation

/// Finds a repeated member name in a JSON object. Decodable keeps one of the values silently (which
/// one differs between parsers, so a gateway may have checked the other); the contract refuses
/// the body instead. Hand-written: Foundation's decoders do not report duplicates. Runs after the
/// body decoded, so it may assume syntactically valid JSON.
enum DuplicateKeys {
    /// The first member name that repeats within one object, if any.
    static func first(in bytes: some RandomAccessCollection<UInt8>) -> String? {
        // One entry per open container: the names seen so far for an object, nil for an array.
        var stack: [Set<String>?] = []
        var expectingKey = false
        var i = bytes.startIndex
        while i < bytes.endIndex {
            switch bytes[i] {
            case UInt8(ascii: "{"):
                stack.append([])
                expectingKey = true
            case UInt8(ascii: "["):
                stack.append(nil)
                expectingKey = false
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = stack.popLast()
                expectingKey = false
            case UInt8(ascii: ","):
                expectingKey = (stack.last ?? nil) != nil
            case UInt8(ascii: "\""):
                let start = bytes.index(after: i)
                var end = start
                var escaped = false
                while end < bytes.endIndex {
                    let c = bytes[end]
                    if c == UInt8(ascii: "\\") {
                        escaped = true
                        end = bytes.index(end, offsetBy: 2, limitedBy: bytes.endIndex) ?? bytes.endIndex
                        continue
                    }
                    if c == UInt8(ascii: "\"") { break }
                    end = bytes.index(after: end)
                }
                if expectingKey, var names = stack.popLast() ?? nil {
                    let name = key(bytes[start..<end], escaped: escaped)
                    if !names.insert(name).inserted { return name }
                    stack.append(names)
                    expectingKey = false
                }
                i = end
            default:
                break
            }
            if i < bytes.endIndex { i = bytes.index(after: i) }
        }
        return nil
    }

    /// A member name as Decodable compares it: escapes resolved, then as a Swift string.
    private static func key(_ raw: some Collection<UInt8>, escaped: Bool) -> String {
        guard escaped else { return String(decoding: raw, as: UTF8.self) }
        let quoted = [UInt8(ascii: "\"")] + raw + [UInt8(ascii: "\"")]
        return (try? JSONDecoder().decode(String.self, from: Data(quoted))) ?? String(decoding: raw, as: UTF8.self)
    }
}
