import Foundation
import Testing

/// Doc comments cite docs/ARCHITECTURE.md by section: every citation must name a section that
/// exists, and no comment may cite a document that is not in the repository.
@Suite struct DocumentationTests {
    @Test func everyArchitectureCitationResolves() throws {
        let root = Fixtures.root
        let doc = try String(contentsOf: root.appendingPathComponent("docs/ARCHITECTURE.md"), encoding: .utf8)
        var sections: Set<Int> = []
        for line in doc.split(separator: "\n") where line.hasPrefix("## ") {
            if let n = Int(line.dropFirst(3).prefix { $0.isNumber }) { sections.insert(n) }
        }
        #expect(sections.count >= 8, "docs/ARCHITECTURE.md has numbered sections")

        var citations = 0
        var broken: [String] = []
        for folder in ["Sources", "Tests", "Benchmarks/Benchmarks", "Benchmarks/Sources"] {
            let base = root.appendingPathComponent(folder)
            guard let files = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil) else { continue }
            for case let file as URL in files where file.pathExtension == "swift" && file.lastPathComponent != "DocumentationTests.swift" {
                let text = try String(contentsOf: file, encoding: .utf8)
                for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    guard let range = line.range(of: "ARCHITECTURE") else { continue }
                    let place = "\(folder)/\(file.lastPathComponent):\(i + 1)"
                    guard line[..<range.lowerBound].hasSuffix("docs/") else {
                        broken.append("\(place): cites a document outside docs/")
                        continue
                    }
                    // Every "§N" after the citation on the line (e.g. "§3 and §5").
                    for part in line[range.upperBound...].split(separator: "§").dropFirst() {
                        citations += 1
                        guard let n = Int(part.prefix { $0.isNumber }), sections.contains(n) else {
                            broken.append("\(place): §\(part.prefix(3)) is not a section")
                            continue
                        }
                    }
                }
            }
        }
        #expect(citations >= 10)
        #expect(broken.isEmpty, "\(broken.joined(separator: "\n"))")
    }
}
