/// FNV-1a, 64 bit: the one checksum behind model checksums, model-set versions and compiled-file
/// payload checks. Fast and stable across platforms; not a cryptographic hash.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func mix(_ bytes: some Sequence<UInt8>) {
        for b in bytes {
            value ^= UInt64(b)
            value &*= 0x0000_0100_0000_01B3
        }
    }

    mutating func mix(byte b: UInt8) {
        value ^= UInt64(b)
        value &*= 0x0000_0100_0000_01B3
    }

    mutating func mix(_ x: UInt64) {
        withUnsafeBytes(of: x.littleEndian) { mix($0) }
    }

    static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var h = FNV1a()
        h.mix(bytes)
        return h.value
    }
}
