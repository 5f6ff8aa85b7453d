public import Foundation

/// The API's timestamps: ISO 8601 in UTC with milliseconds (`2026-01-02T03:04:05.678Z`).
public enum Timestamp {
    public static func iso8601(_ date: Date) -> String {
        date.formatted(
            .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true).timeSeparator(.colon).timeZone(separator: .omitted))
    }
}
