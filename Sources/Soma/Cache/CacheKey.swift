/// The name of one cached value, shared by the in-process cache (L1) and Redis (L2).
///
/// Two kinds of entry are cached:
///
/// - **Analysis results** are content-addressed: module + model version + SHA-256 of the normalised
///   text. They hold no user data, so users share them. The model version is part of the key, so a
///   new model (or an FP16 instance next to an FP32 one) never reads another model's results, and no
///   invalidation is needed when models change: old entries just age out with their TTL.
/// - **Per-user data** (the profile) is keyed by the user's `UserTag` and a name, so that erasing
///   a user can find every entry that belongs to them (`userTag`) and no shared layer holds an id.
///
/// The text is hashed once, when the key is made; the key keeps the 32-byte digest, not the text,
/// so keys are small and hashing/comparing them costs a few integer operations, however long the
/// text was.
///
/// `description` is the Redis key:
///
/// ```
/// soma:v1:a:<module>:<modelversion>:<sha256hex>    analysis result
/// soma:v1:u:<usertag>:<name>                       per-user entry
/// soma:v1:ux:<usertag>                             the user's index of analysis keys (Redis set)
/// ```
///
/// ```swift
/// let key = CacheKey.analysis(module: .emotion, modelVersion: "9f2c…", normalizedText: text)
/// let profile = CacheKey.user("u-42", "profile")
/// String(describing: profile)   // "soma:v1:u:<32 hex digits>:profile"
/// ```
///
/// Free-form parts (model version, name) are written with `%` and `:` percent-escaped (`%25`,
/// `%3A`) so that two different keys never render the same Redis key (version "a:b" with a text
/// against version "a" with another). Parts without those characters render unchanged.
public struct CacheKey: Hashable, Sendable, CustomStringConvertible {
    private enum Kind: Hashable, Sendable {
        case analysis(Module, modelVersion: String, text: SHA256.Digest)
        case user(UserTag, name: String)
    }

    private let kind: Kind

    private init(_ kind: Kind) {
        self.kind = kind
    }

    /// The key of `module`'s result for a text, under the model identified by `modelVersion`.
    ///
    /// `normalizedText` must be the output of `TextNormalizer.normalize(_:)`, so that texts that
    /// analyse the same share one entry. Costs one SHA-256 pass over the text's UTF-8 bytes.
    public static func analysis(module: Module, modelVersion: String, normalizedText: String) -> CacheKey {
        analysis(module: module, modelVersion: modelVersion, text: TextDigest(normalizedText: normalizedText))
    }

    /// The same key from the text's digest, so a request for several modules hashes its text once.
    public static func analysis(module: Module, modelVersion: String, text: TextDigest) -> CacheKey {
        CacheKey(.analysis(module, modelVersion: modelVersion, text: text.digest))
    }

    /// The SHA-256 of a normalised text: what names it in analysis keys.
    public struct TextDigest: Hashable, Sendable {
        let digest: SHA256.Digest

        public init(normalizedText: String) { digest = SHA256.hash(normalizedText) }
    }

    /// The names of every per-user entry the service writes: erasing a user deletes exactly these,
    /// with no scan over the key space.
    public static let userEntryNames = ["profile"]

    /// Every per-user key of the user tagged `tag`.
    public static func userEntries(of tag: UserTag) -> [CacheKey] {
        userEntryNames.map { CacheKey(.user(tag, name: $0)) }
    }

    /// The key of the per-user entry `name` (e.g. "profile") of `userID`.
    public static func user(_ userID: String, _ name: String) -> CacheKey {
        CacheKey(.user(UserTag(userID), name: name))
    }

    /// The user a per-user key belongs to; nil for analysis keys (those are found through the
    /// per-user index, `UserCacheIndex` and the Redis set `soma:v1:ux:<tag>`).
    public var userTag: UserTag? {
        if case .user(let tag, _) = kind { return tag }
        return nil
    }

    /// The Redis set that lists the analysis keys the user tagged `tag` produced or was served.
    public static func userIndex(of tag: UserTag) -> String {
        "soma:v1:ux:\(tag.hex)"
    }

    /// The module of an analysis key; nil for per-user keys.
    public var module: Module? {
        if case .analysis(let module, _, _) = kind { return module }
        return nil
    }

    /// The Redis key (see the layout above).
    public var description: String {
        switch kind {
        case .analysis(let module, let modelVersion, let digest):
            "soma:v1:a:\(module.rawValue):\(Self.escaped(modelVersion)):\(digest.hex)"
        case .user(let tag, let name):
            "soma:v1:u:\(tag.hex):\(Self.escaped(name))"
        }
    }

    /// The SHA-256 of `text`'s UTF-8 bytes as 64 lowercase hex digits, as it appears in analysis keys.
    public static func sha256Hex(_ text: String) -> String {
        SHA256.hash(text).hex
    }

    /// FNV-1a (64 bit) of `description`'s UTF-8 bytes, computed without building it: the
    /// fingerprint `UserCacheIndex` keeps on the request path (equal to
    /// `FNV1a.hash(description.utf8)`, which is how names read back from a layer are matched).
    public var nameFingerprint: UInt64 {
        var h = FNV1a()
        let colon = UInt8(ascii: ":")
        switch kind {
        case .analysis(let module, let modelVersion, let digest):
            h.mix("soma:v1:a:".utf8)
            h.mix(module.rawValue.utf8)
            h.mix(byte: colon)
            Self.mixEscaped(modelVersion, into: &h)
            h.mix(byte: colon)
            digest.mixHex(into: &h)
        case .user(let tag, let name):
            h.mix("soma:v1:u:".utf8)
            h.mix(tag.hex.utf8)
            h.mix(byte: colon)
            Self.mixEscaped(name, into: &h)
        }
        return h.value
    }

    private static func mixEscaped(_ part: String, into h: inout FNV1a) {
        for byte in part.utf8 {
            switch byte {
            case UInt8(ascii: "%"): h.mix("%25".utf8)
            case UInt8(ascii: ":"): h.mix("%3A".utf8)
            default: h.mix(byte: byte)
            }
        }
    }

    /// `part` with `%` and `:` percent-escaped, so it cannot be confused with the key's separators.
    private static func escaped(_ part: String) -> String {
        let percent = UInt8(ascii: "%")
        let colon = UInt8(ascii: ":")
        guard part.utf8.contains(where: { $0 == percent || $0 == colon }) else { return part }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(part.utf8.count + 8)
        for byte in part.utf8 {
            switch byte {
            case percent: bytes.append(contentsOf: "%25".utf8)
            case colon: bytes.append(contentsOf: "%3A".utf8)
            default: bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: - SHA-256

/// SHA-256 as specified in FIPS 180-4 §6.2, over a byte buffer in one pass.
///
/// Written here rather than taken from swift-crypto because cache keys are its only use and the
/// algorithm is short; it lives next to `CacheKey`, its one client. It is not constant-time and is
/// not meant for secrets: it names texts. Nothing is allocated on the heap while hashing (the
/// message schedule and the padded tail are stack buffers), so hashing a request's text on the hot
/// path costs only the compression rounds.
struct SHA256 {
    /// A 32-byte digest, kept as four big-endian 64-bit words so that equality and hashing are a
    /// few integer operations.
    struct Digest: Hashable, Sendable, CustomStringConvertible {
        var w0: UInt64
        var w1: UInt64
        var w2: UInt64
        var w3: UInt64

        /// The digest as 64 lowercase hex digits (the usual rendering: byte 0 first).
        var hex: String {
            let digits: StaticString = "0123456789abcdef"
            return String(unsafeUninitializedCapacity: 64) { buffer in
                digits.withUTF8Buffer { digits in
                    for (index, word) in [w0, w1, w2, w3].enumerated() {
                        for nibble in 0..<16 {
                            let value = Int(truncatingIfNeeded: word >> UInt64(60 - 4 * nibble)) & 0xF
                            buffer[index * 16 + nibble] = digits[value]
                        }
                    }
                }
                return 64
            }
        }

        var description: String { hex }

        /// Mixes the 64 hex digits of `hex` into `h` without building the string.
        func mixHex(into h: inout FNV1a) {
            for word in [w0, w1, w2, w3] {
                for nibble in 0..<16 {
                    let value = UInt8(truncatingIfNeeded: word >> UInt64(60 - 4 * nibble)) & 0xF
                    h.mix(byte: value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10)
                }
            }
        }
    }

    /// The SHA-256 of `text`'s UTF-8 bytes.
    static func hash(_ text: String) -> Digest {
        var text = text
        return text.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    /// The SHA-256 of `bytes`.
    static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest {
        var state = State()
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { schedule in
            let schedule = schedule.baseAddress!
            let fullBlocks = bytes.count / 64
            for block in 0..<fullBlocks {
                let start = block * 64
                state.compress(UnsafeRawBufferPointer(rebasing: bytes[start..<start + 64]), schedule: schedule)
            }
            // Padding (§5.1.1): the remaining bytes, 0x80, zeros, and the message length in bits as
            // a big-endian 64-bit integer, filling one block, or two when fewer than 9 bytes are left.
            let rest = bytes.count - fullBlocks * 64
            withUnsafeTemporaryAllocation(byteCount: 128, alignment: 8) { tail in
                tail.initializeMemory(as: UInt8.self, repeating: 0)
                if rest > 0 {
                    tail.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[(fullBlocks * 64)...]))
                }
                tail[rest] = 0x80
                let tailBlocks = rest < 56 ? 1 : 2
                let bitLength = UInt64(bytes.count) &* 8
                tail.storeBytes(of: bitLength.bigEndian, toByteOffset: tailBlocks * 64 - 8, as: UInt64.self)
                for block in 0..<tailBlocks {
                    let start = block * 64
                    state.compress(UnsafeRawBufferPointer(rebasing: tail[start..<start + 64]), schedule: schedule)
                }
            }
        }
        return state.digest
    }

    /// The eight working hash words H0…H7 (§5.3.3 initial values).
    private struct State {
        var h0: UInt32 = 0x6a09_e667
        var h1: UInt32 = 0xbb67_ae85
        var h2: UInt32 = 0x3c6e_f372
        var h3: UInt32 = 0xa54f_f53a
        var h4: UInt32 = 0x510e_527f
        var h5: UInt32 = 0x9b05_688c
        var h6: UInt32 = 0x1f83_d9ab
        var h7: UInt32 = 0x5be0_cd19

        var digest: Digest {
            Digest(
                w0: UInt64(h0) << 32 | UInt64(h1),
                w1: UInt64(h2) << 32 | UInt64(h3),
                w2: UInt64(h4) << 32 | UInt64(h5),
                w3: UInt64(h6) << 32 | UInt64(h7)
            )
        }

        /// Processes one 64-byte block (§6.2.2); `schedule` is scratch space for 64 words.
        mutating func compress(_ block: UnsafeRawBufferPointer, schedule w: UnsafeMutablePointer<UInt32>) {
            for t in 0..<16 {
                w[t] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: t * 4, as: UInt32.self))
            }
            for t in 16..<64 {
                let x = w[t - 15]
                let y = w[t - 2]
                let s0 = x.rotatedRight(7) ^ x.rotatedRight(18) ^ (x >> 3)
                let s1 = y.rotatedRight(17) ^ y.rotatedRight(19) ^ (y >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            var a = h0
            var b = h1
            var c = h2
            var d = h3
            var e = h4
            var f = h5
            var g = h6
            var h = h7
            SHA256.roundConstants.withUnsafeBufferPointer { k in
                for t in 0..<64 {
                    let sum1 = e.rotatedRight(6) ^ e.rotatedRight(11) ^ e.rotatedRight(25)
                    let choose = (e & f) ^ (~e & g)
                    let t1 = h &+ sum1 &+ choose &+ k[t] &+ w[t]
                    let sum0 = a.rotatedRight(2) ^ a.rotatedRight(13) ^ a.rotatedRight(22)
                    let majority = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = sum0 &+ majority
                    h = g
                    g = f
                    f = e
                    e = d &+ t1
                    d = c
                    c = b
                    b = a
                    a = t1 &+ t2
                }
            }
            h0 &+= a
            h1 &+= b
            h2 &+= c
            h3 &+= d
            h4 &+= e
            h5 &+= f
            h6 &+= g
            h7 &+= h
        }
    }

    /// K0…K63 (§4.2.2): the first 32 bits of the fractional parts of the cube roots of the first 64
    /// primes.
    private static let roundConstants: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]
}

extension UInt32 {
    fileprivate func rotatedRight(_ count: UInt32) -> UInt32 {
        (self >> count) | (self << (32 - count))
    }
}
