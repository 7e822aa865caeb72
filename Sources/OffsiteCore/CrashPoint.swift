import Foundation

/// Named moments in multi-step file operations at which the crash tests kill the process, to show
/// that every step leaves a state that loses nothing. A test sets `OFFSITE_TEST_CRASH_AT` to a
/// point's name; the process then sends itself SIGKILL on reaching it. Unset (always, outside the
/// tests), a point costs one dictionary lookup.
enum CrashPoint {
    /// The environment variable naming the point to die at.
    static let variable = "OFFSITE_TEST_CRASH_AT"
    private static let chosen = ProcessInfo.processInfo.environment[variable]

    /// Dies here with SIGKILL when this point was chosen.
    static func reach(_ name: String) {
        guard let chosen, chosen == name else { return }
        kill(getpid(), SIGKILL)
    }
}
