import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Wakes the agent when something happens in the folders that hold its databases (inotify), or
/// when another thread asks it to (a pipe), and otherwise sleeps until its next deadline.
public final class Watcher {
    /// A change inside a watched folder.
    public struct Event: Sendable, Equatable {
        /// The watched folder.
        public var folder: String
        /// The file's name inside it.
        public var name: String
    }

    private let inotify: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var folders: [Int32: String] = [:]

    /// Creates a watcher with no folders yet.
    public init() throws {
        inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard inotify >= 0 else { throw FileIOError(operation: "inotify_init1", path: "", code: errno) }
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else {
            close(inotify)
            throw FileIOError(operation: "pipe", path: "", code: errno)
        }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        wakeRead = ends[0]
        wakeWrite = ends[1]
    }

    deinit {
        close(inotify)
        close(wakeRead)
        close(wakeWrite)
    }

    /// Watches `folder` for files written and closed, created, moved in or out, or deleted. Not
    /// for every write (IN_MODIFY): the kernel queues that event and wakes this process inside the
    /// application's own write(), once per commit of a WAL-mode database; a bare watcher with it
    /// raised the application's commit p50 from 0.13 to 0.18 ms and p99 from 0.25 to 0.37 ms at 50
    /// commits a second (without it: as alone). The agent looks at its databases once a second
    /// instead (`Agent.databasePollInterval`).
    public func watch(folder: String) throws {
        guard !folders.values.contains(folder) else { return }
        let mask = UInt32(IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB)
        let descriptor = inotify_add_watch(inotify, folder, mask)
        guard descriptor >= 0 else { throw FileIOError(operation: "watch", path: folder, code: errno) }
        folders[descriptor] = folder
    }

    /// Wakes a thread blocked in `wait`; safe from any thread and from signal handlers.
    public func wake() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)
    }

    /// What ended a wait.
    public struct Wakeup {
        /// Files that changed, in order, duplicates removed.
        public var events: [Event]
        /// Whether `wake()` was called.
        public var wasWoken: Bool
    }

    /// Blocks until a file changes, `wake()` is called, or `deadline` passes (nil: no deadline).
    public func wait(until deadline: Date?) -> Wakeup {
        var descriptors = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        let timeout: Int32
        if let deadline {
            let milliseconds = (deadline.timeIntervalSinceNow * 1000).rounded(.up)
            timeout = Int32(max(0, min(milliseconds, Double(Int32.max))))
        } else {
            timeout = -1
        }
        let ready = poll(&descriptors, 2, timeout)
        var wakeup = Wakeup(events: [], wasWoken: false)
        guard ready > 0 else { return wakeup }
        if descriptors[1].revents != 0 {
            var buffer = [UInt8](repeating: 0, count: 64)
            while read(wakeRead, &buffer, buffer.count) > 0 {}
            wakeup.wasWoken = true
        }
        if descriptors[0].revents != 0 { wakeup.events = drainEvents() }
        return wakeup
    }

    private func drainEvents() -> [Event] {
        var events: [Event] = []
        let size = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let count = read(inotify, buffer, size)
            guard count > 0 else { break }
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= count {
                let header = buffer.load(fromByteOffset: offset, as: inotify_event.self)
                let nameStart = offset + MemoryLayout<inotify_event>.size
                var name = ""
                if header.len > 0 {
                    name = String(cString: buffer.advanced(by: nameStart).assumingMemoryBound(to: CChar.self))
                }
                if let folder = folders[header.wd], !name.isEmpty {
                    let event = Event(folder: folder, name: name)
                    if !events.contains(event) { events.append(event) }
                }
                offset = nameStart + Int(header.len)
            }
        }
        return events
    }
}
