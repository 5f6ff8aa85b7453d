import Foundation

/// Unicode normalisation applied to every text before analysis: NFC, typographic quotes and
/// apostrophes folded to ASCII, invisible format characters removed, line endings unified.
///
/// The normalised text is what cache keys are computed over, so two texts that read the same
/// analyse — and cache — the same.
public enum TextNormalizer {
    public static func normalize(_ text: String) -> String {
        // Most texts are ASCII without carriage returns, and come back as they are. Their bytes are
        // scanned in place: iterating `text.utf8` cost about 50 instructions a byte
        // (scripts/engine-profile.py).
        func needsWork(_ bytes: some Sequence<UInt8>) -> Bool { bytes.contains { $0 >= 0x80 || $0 == 0x0D } }
        guard text.utf8.withContiguousStorageIfAvailable(needsWork) ?? needsWork(text.utf8) else { return text }
        let composed = text.precomposedStringWithCanonicalMapping
        var scalars = String.UnicodeScalarView()
        scalars.reserveCapacity(composed.unicodeScalars.count)
        var previousWasCR = false
        for scalar in composed.unicodeScalars {
            defer { previousWasCR = scalar == "\r" }
            switch scalar.value {
            case 0x0D: scalars.append("\n")
            case 0x0A where previousWasCR: continue
            case 0x2018, 0x2019, 0x201B, 0x2032, 0x02BC: scalars.append("'")
            case 0x201C, 0x201D, 0x201F, 0x2033, 0x00AB, 0x00BB: scalars.append("\"")
            case 0x00A0, 0x2000...0x200A, 0x202F, 0x205F, 0x3000: scalars.append(" ")
            case 0x200B, 0x2060, 0xFEFF, 0x00AD: continue  // zero-width and soft hyphen
            case 0x2010, 0x2011: scalars.append("-")
            default: scalars.append(scalar)
            }
        }
        return String(scalars)
    }
}
