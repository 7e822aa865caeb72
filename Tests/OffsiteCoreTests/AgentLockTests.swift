import Foundation
import Testing
@testable import OffsiteCore

/// A python3 child process that holds (or tries) an flock on a file.
private final class LockingChild {
    let process = Process()
    private let output = Pipe()
    private let input = Pipe()

    /// Starts python running `script` with the lock file as its argument.
    init(script: String, path: String) throws {
        process.executableURL = URL(fileURLWithPath: try locateTool("python3"))
        process.arguments = ["-c", script, path]
        process.standardOutput = output
        process.standardInput = input
        try process.run()
    }

    /// The child's first line of output.
    func readLine() -> String {
        var bytes: [UInt8] = []
        let handle = output.fileHandleForReading
        while true {
            let chunk = handle.readData(ofLength: 1)
            if chunk.isEmpty || chunk.first == UInt8(ascii: "\n") { break }
            bytes.append(chunk.first!)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Kills the child with SIGKILL, as `kill -9` would, and waits for it.
    func killAndWait() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// Locks the file, writes this process's pid like an agent does, says "locked", then waits.
private let holdingScript = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.pwrite(fd, ("pid=%d\\nhost=childhost\\nstarted=2026-11-22T03:17:00Z\\n" % os.getpid()).encode(), 0)
print("locked", flush=True)
sys.stdin.read()
"""

/// Tries the lock once and prints "free" or "busy".
private let probingScript = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free", flush=True)
except BlockingIOError:
    print("busy", flush=True)
"""

@Suite struct AgentLockTests {
    @Test func aSecondAcquireFailsNamingTheHolder() throws {
        let folder = try ScratchFolder("lock")
        let started = Date(timeIntervalSince1970: 1_795_317_420)
        let first = try AgentLock.acquire(folder: folder.path, startedAt: started)
        #expect(first.isHeld && first.path == folder.file(".offsite.lock"))
        #expect(try permissions(of: first.path) == 0o600)
        let content = try String(contentsOfFile: first.path, encoding: .utf8)
        #expect(content.hasPrefix("pid=\(getpid())\nhost=") && content.hasSuffix("started=2026-11-22T03:17:00Z\n"))
        do {
            _ = try AgentLock.acquire(folder: folder.path)
            Issue.record("a second agent got the lock")
        } catch let error as AgentLockError {
            #expect(error.holderPID == getpid())
            #expect(error.holderStartedAt == "2026-11-22T03:17:00Z")
            #expect(error.message.hasPrefix("another offsite agent (pid \(getpid()) on host "))
            #expect(error.message.hasSuffix(", started 2026-11-22T03:17:00Z) is using \(folder.path)"))
            #expect(error.hint != nil)
        }
        // The failed attempt did not disturb the holder.
        #expect(first.isHeld)
        #expect(throws: AgentLockError.self) { try AgentLock.acquire(folder: folder.path) }
    }

    @Test func releasingOrDroppingTheLockFreesIt() throws {
        let folder = try ScratchFolder("lock")
        let first = try AgentLock.acquire(folder: folder.path)
        first.release()
        first.release()  // harmless
        #expect(!first.isHeld)
        do {
            let second = try AgentLock.acquire(folder: folder.path)
            #expect(second.isHeld)
        }  // dropped here
        let third = try AgentLock.acquire(folder: folder.path)
        #expect(third.isHeld)
        #expect(try folder.names() == [".offsite.lock"], "the lock file stays; nothing else appears")
    }

    @Test func aStaleFileFromAKilledAgentDoesNotBlock() throws {
        let folder = try ScratchFolder("lock")
        try "pid=99999\nhost=gone\nstarted=2020-01-01T00:00:00Z\n"
            .write(toFile: folder.file(".offsite.lock"), atomically: false, encoding: .utf8)
        let lock = try AgentLock.acquire(folder: folder.path)
        let content = try String(contentsOfFile: lock.path, encoding: .utf8)
        #expect(content.hasPrefix("pid=\(getpid())\n") && !content.contains("gone"))
    }

    @Test func anotherProcessHoldingTheLockIsNamedAndItsDeathFreesTheLock() throws {
        let folder = try ScratchFolder("lock")
        let path = folder.file(".offsite.lock")
        let child = try LockingChild(script: holdingScript, path: path)
        #expect(child.readLine() == "locked")
        do {
            _ = try AgentLock.acquire(folder: folder.path)
            Issue.record("got the lock while another process held it")
        } catch let error as AgentLockError {
            #expect(error.holderPID == child.process.processIdentifier)
            #expect(error.message == "another offsite agent (pid \(child.process.processIdentifier) on host childhost, "
                        + "started 2026-11-22T03:17:00Z) is using \(folder.path)")
        }
        child.killAndWait()  // kill -9: the kernel drops the lock, the file stays
        #expect(pathExists(path))
        let lock = try AgentLock.acquire(folder: folder.path)
        #expect(lock.isHeld)
    }

    @Test func anotherProcessSeesTheLockUntilItIsReleased() throws {
        let folder = try ScratchFolder("lock")
        let lock = try AgentLock.acquire(folder: folder.path)
        let busy = try LockingChild(script: probingScript, path: lock.path)
        #expect(busy.readLine() == "busy")
        busy.process.waitUntilExit()
        lock.release()
        let free = try LockingChild(script: probingScript, path: lock.path)
        #expect(free.readLine() == "free")
        free.process.waitUntilExit()
    }

    @Test func aMissingFolderIsCreatedPrivate() throws {
        let folder = try ScratchFolder("lock")
        let nested = folder.file("backups/local")
        let lock = try AgentLock.acquire(folder: nested)
        #expect(lock.isHeld)
        #expect(try permissions(of: nested) == 0o700)
    }

    @Test func aLockerWhoHasNotWrittenYetIsStillReported() {
        let error = AgentLockError(folder: "/backups", holderPID: nil, holderHost: nil, holderStartedAt: nil)
        #expect(error.message == "another offsite agent is using /backups")
    }
}
