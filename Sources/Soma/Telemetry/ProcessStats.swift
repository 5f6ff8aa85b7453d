public import Foundation

#if canImport(Glibc)
    import Glibc
    // hiredis' header includes <sys/time.h> textually, so depending on build order Clang attributes
    // `timeval`'s members to the CHiredis module (seen in release builds); importing it here keeps
    // `tv_sec`/`tv_usec` visible either way.
    import CHiredis
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Resource figures of this process for the `process_*` metrics, read on demand.
///
/// On Linux they come from `/proc/self` (and `getrusage` for CPU time); a figure the platform does
/// not offer is `nil`. Each call reads its source afresh, so call them at scrape time, not per
/// request.
public enum ProcessStats {
    /// User plus system CPU time of this process so far, in seconds.
    ///
    /// From `getrusage` (microsecond resolution); where that fails, from fields 14 and 15 (utime,
    /// stime) of `/proc/self/stat` in clock ticks.
    public static func cpuSeconds() -> Double? {
        var usage = rusage()
        #if canImport(Glibc)
            let who = __rusage_who_t(RUSAGE_SELF.rawValue)
        #else
            let who = RUSAGE_SELF
        #endif
        if getrusage(who, &usage) == 0 {
            return seconds(usage.ru_utime) + seconds(usage.ru_stime)
        }
        guard let fields = statFields(), fields.count > 12,
            let utime = Double(fields[11]), let stime = Double(fields[12]), let ticks = clockTicks()
        else { return nil }
        return (utime + stime) / ticks
    }

    /// Resident set size in bytes: resident pages of `/proc/self/statm` × the page size.
    public static func residentBytes() -> Int? {
        guard let text = read("/proc/self/statm") else { return nil }
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pageSize > 0 else { return nil }
        return pages * pageSize
    }

    /// Number of open file descriptors: the entries of `/proc/self/fd`, not counting the one used to
    /// list them.
    public static func openFileDescriptors() -> Int? {
        guard let dir = opendir("/proc/self/fd") else { return nil }
        defer { closedir(dir) }
        let own = dirfd(dir)
        var count = 0
        while let entry = readdir(dir) {
            var name = entry.pointee.d_name
            let fd = withUnsafeBytes(of: &name) { raw -> Int32? in
                Int32(String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self))
            }
            if let fd, fd != own { count += 1 }
        }
        return count
    }

    /// When this process started, in seconds since the Unix epoch: field 22 of `/proc/self/stat`
    /// (clock ticks after boot) plus the boot time (`btime` of `/proc/stat`).
    public static func startTime() -> Double? {
        guard let fields = statFields(), fields.count > 19, let start = Double(fields[19]), let ticks = clockTicks(),
            let stat = read("/proc/stat")
        else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            guard let boot = Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) else { return nil }
            return boot + start / ticks
        }
        return nil
    }

    /// Total size in bytes of the regular files under `url`, recursively; 0 when it does not exist.
    /// Symbolic links are not followed.
    public static func directoryBytes(_ url: URL) -> Int {
        let keys: [URLResourceKey] = [.isRegularFileKey, .fileSizeKey]
        guard let enumerator = FileManager.default.enumerator(at: url, includingPropertiesForKeys: keys, options: [], errorHandler: { _, _ in true })
        else { return 0 }
        var total = 0
        for case let file as URL in enumerator {
            guard let values = try? file.resourceValues(forKeys: Set(keys)), values.isRegularFile == true else { continue }
            total += values.fileSize ?? 0
        }
        return total
    }

    /// The fields of a `/proc/<pid>/stat` line after the command name, starting with field 3
    /// (state): index `k` holds field `k + 3`. The name (field 2) is in parentheses and may itself
    /// contain spaces and parentheses, so the line is cut after its last `)`. `nil` when the line
    /// has no `)`.
    public static func statFields(_ line: String) -> [Substring]? {
        guard let close = line.lastIndex(of: ")") else { return nil }
        return line[line.index(after: close)...].split(whereSeparator: \.isWhitespace)
    }

    private static func statFields() -> [Substring]? {
        read("/proc/self/stat").flatMap(statFields)
    }

    private static func clockTicks() -> Double? {
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        return ticks > 0 ? Double(ticks) : nil
    }

    private static func seconds(_ t: timeval) -> Double {
        Double(t.tv_sec) + Double(t.tv_usec) / 1_000_000
    }

    /// The contents of a small file; `/proc` files report size 0, so this reads until EOF.
    private static func read(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.readToEnd() else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
