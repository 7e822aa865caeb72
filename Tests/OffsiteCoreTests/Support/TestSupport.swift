import Foundation

/// A fresh folder under the system temporary folder, removed when the value is dropped.
final class ScratchFolder {
    /// The folder's path.
    let path: String

    init(_ label: String) throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("offsite-\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// The path of `name` inside the folder.
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    /// The names in the folder, sorted.
    func names() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }
}

/// Runs a tool found on PATH with `arguments`, stdin and stdout from/to files; returns its exit status.
@discardableResult
func runTool(_ arguments: [String], input: String? = nil, output: String? = nil) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    if let input { process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: input)) }
    if let output {
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
    }
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}

/// Runs a tool and returns its standard output as text (for short outputs).
func toolOutput(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The permission bits of the file or folder at `path`.
func permissions(of path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
}

/// A small deterministic random generator for test data.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A fresh temporary folder, removed by the caller.
func makeTemporaryFolder(_ label: String = "test") throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("offsite-\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The absolute path of `name` found on PATH; fails the test when the tool is missing.
func locateTool(_ name: String) throws -> String {
    let searchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for directory in searchPath.split(separator: ":") where !directory.isEmpty {
        let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw TestFailure("'\(name)' was not found on PATH; run scripts/install-deps.sh")
}

/// A failure of the test's own set-up, with a message.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What a finished program run produced.
struct ToolResult {
    let status: Int32
    let standardOutputData: Data
    var standardOutput: String { String(decoding: standardOutputData, as: UTF8.self) }
    let standardError: String
}

/// Runs a tool found on PATH to completion; see `runProgram`.
func runTool(_ name: String, _ arguments: [String], in folder: ScratchFolder,
             environment extra: [String: String] = [:], standardInput: String? = nil) throws -> ToolResult {
    try runProgram(try locateTool(name), arguments, in: folder, environment: extra, standardInput: standardInput)
}

/// Runs the program at `executable` to completion with stdout and stderr captured in files (so
/// large output cannot dead-lock a pipe), the environment plus `extra` (a value of "" removes a
/// variable), and `standardInput` as its input (none: /dev/null).
func runProgram(_ executable: String, _ arguments: [String], in folder: ScratchFolder,
                environment extra: [String: String] = [:], standardInput: String? = nil) throws -> ToolResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    for (key, value) in extra { environment[key] = value.isEmpty ? nil : value }
    process.environment = environment
    process.currentDirectoryURL = URL(fileURLWithPath: folder.path)
    let tag = UUID().uuidString
    let outPath = folder.file(".stdout-\(tag)")
    let errPath = folder.file(".stderr-\(tag)")
    defer {
        unlink(outPath)
        unlink(errPath)
    }
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    let outHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardOutput = outHandle
    process.standardError = errHandle
    if let standardInput {
        let inPath = folder.file(".stdin-\(tag)")
        defer { unlink(inPath) }
        try Data(standardInput.utf8).write(to: URL(fileURLWithPath: inPath))
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
        try process.run()
    } else {
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }
    process.waitUntilExit()
    try outHandle.close()
    try errHandle.close()
    let output = try Data(contentsOf: URL(fileURLWithPath: outPath))
    let errors = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return ToolResult(status: process.terminationStatus, standardOutputData: output, standardError: errors)
}

/// Deterministic test data mixing runs of text (compressible) and pseudo-random bytes.
func mixedTestData(count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> Data {
    var state = seed
    func nextRandom() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
    let text = Array("INSERT INTO contacts VALUES (42, 'Ada Lovelace', 'ada@example.com');\n".utf8)
    var bytes = [UInt8]()
    bytes.reserveCapacity(count)
    while bytes.count < count {
        let run = Int(nextRandom() % 5000) + 1
        if nextRandom() % 3 == 0 {
            for _ in 0..<run { bytes.append(UInt8(truncatingIfNeeded: nextRandom())) }
        } else {
            for index in 0..<run { bytes.append(text[index % text.count]) }
        }
    }
    return Data(bytes.prefix(count))
}

/// `name` on PATH, or in the sbin folders where Debian puts apache2; nil when missing.
func findExecutable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    for folder in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/sbin", "/sbin"] {
        let candidate = "\(folder)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() throws -> Int {
    let socketHandle = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socketHandle >= 0 else { throw FixtureError("socket() failed") }
    defer { close(socketHandle) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketHandle, $0, length) == 0 && getsockname(socketHandle, $0, &length) == 0 }
    }
    guard bound else { throw FixtureError("could not find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
