import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// glibc's allocator, kept from growing with the threads the pipeline starts. By default it gives
/// each new thread that allocates while another holds the lock an arena of its own (up to eight
/// per core), and memory freed in an arena stays with it: an agent that took a backup every few
/// seconds held nine arenas of 11–14 MiB each (124 MiB of its 161 MiB resident) while its live
/// data was a few MiB. `mallopt` and `malloc_trim` are not in Swift's Glibc module; they are
/// found by name in the C library the process already uses.
public enum ProcessMemory {
    private typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    private typealias MallocTrim = @convention(c) (Int) -> Int32
    /// glibc's `M_ARENA_MAX` (malloc.h).
    private static let arenaMaximum: Int32 = -8

    /// Limits the allocator to `count` arenas; call first thing, before threads start. Returns
    /// whether the C library took the setting (false on a C library without `mallopt`).
    @discardableResult
    public static func limitArenas(to count: Int32 = 2) -> Bool {
        #if os(Linux)
        guard let symbol = dlsym(nil, "mallopt") else { return false }
        return unsafeBitCast(symbol, to: Mallopt.self)(arenaMaximum, count) == 1
        #else
        return false
        #endif
    }

    /// Gives memory that was freed back to the system (`malloc_trim(0)`): after a backup, whose
    /// buffers are gone. Returns whether anything was released.
    @discardableResult
    public static func releaseFreedMemory() -> Bool {
        #if os(Linux)
        guard let symbol = dlsym(nil, "malloc_trim") else { return false }
        return unsafeBitCast(symbol, to: MallocTrim.self)(0) == 1
        #else
        return false
        #endif
    }
}
