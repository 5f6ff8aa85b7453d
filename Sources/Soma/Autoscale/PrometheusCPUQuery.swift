public import Foundation

/// The autoscaler's CPU figure, from Prometheus's HTTP query API: each instance's CPU seconds per
/// second over a short range, divided by the CPU an instance is budgeted (one core unless said
/// otherwise), by the `instance_id` label every target of the soma job carries.
public struct PrometheusCPUQuery: Sendable, Hashable {
    /// The range of `rate()`: at least two scrapes must fall in it (the stacks scrape every 5 s).
    public var range: Duration
    /// CPU cores one instance is budgeted; utilisation 1 is a full budget.
    public var coresPerInstance: Double

    public init(range: Duration = .seconds(30), coresPerInstance: Double = 1) {
        precondition(coresPerInstance > 0, "coresPerInstance must be positive")
        self.range = range
        self.coresPerInstance = coresPerInstance
    }

    /// The PromQL expression.
    public var expression: String {
        let seconds = max(1, Int(range.components.seconds))
        return "rate(\(SomaMetrics.Name.processCPU){job=\"soma\"}[\(seconds)s])"
    }

    /// The query's path and query string, relative to Prometheus's base URL.
    public var path: String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "/api/v1/query?query=" + (expression.addingPercentEncoding(withAllowedCharacters: allowed) ?? expression)
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// Utilisation by instance id from a `/api/v1/query` answer (an instant vector). A series with
    /// no `instance_id` label, or a value that is not a finite number, is left out.
    public func utilisation(from body: Data) throws(Failure) -> [String: Double] {
        struct Answer: Decodable {
            struct Result: Decodable {
                var metric: [String: String]
                var value: [Value]
            }
            struct Payload: Decodable {
                var resultType: String
                var result: [Result]
            }
            var status: String
            var data: Payload?
            var error: String?
        }
        /// `[<unix time>, "<value>"]`: a number, then a string.
        enum Value: Decodable {
            case number(Double)
            case text(String)
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Double.self) { self = .number(number) } else { self = .text(try container.decode(String.self)) }
            }
        }
        let answer: Answer
        do {
            answer = try JSONDecoder().decode(Answer.self, from: body)
        } catch {
            throw Failure(description: "Prometheus answered something that is not a query result: \(error)")
        }
        guard answer.status == "success", let data = answer.data else {
            throw Failure(description: "Prometheus refused the query: \(answer.error ?? answer.status)")
        }
        guard data.resultType == "vector" else { throw Failure(description: "expected an instant vector, got \(data.resultType)") }
        var result: [String: Double] = [:]
        for series in data.result {
            guard let id = series.metric["instance_id"], series.value.count == 2,
                case .text(let text) = series.value[1], let value = Double(text), value.isFinite, value >= 0
            else { continue }
            result[id] = value / coresPerInstance
        }
        return result
    }
}
