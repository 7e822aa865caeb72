import CRMSim
import Foundation
import Testing
@testable import OffsiteCore

/// The folder holding the built products: the test bundle sits beside the `offsite` executable.
let productsFolder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path

/// Runs the built `offsite` binary with `arguments` in `folder`. Environment variables of the
/// tests' own shell that would change its behaviour (OFFSITE_*, AWS_*) are removed unless given.
func offsite(_ arguments: [String], in folder: ScratchFolder, environment: [String: String] = [:],
             standardInput: String? = nil) throws -> ToolResult {
    let executable = "\(productsFolder)/offsite"
    guard FileManager.default.isExecutableFile(atPath: executable) else {
        throw TestFailure("\(executable) is missing: run `swift build` before `swift test` (scripts/test.sh does)")
    }
    var cleared = environment
    for key in ProcessInfo.processInfo.environment.keys where key.hasPrefix("OFFSITE_") || key.hasPrefix("AWS_") {
        if cleared[key] == nil { cleared[key] = "" }
    }
    return try runProgram(executable, arguments, in: folder, environment: cleared, standardInput: standardInput)
}

/// Expects a failure reported the way every command reports one: a non-zero exit status, an
/// `error: …` line on stderr (optionally one `hint: …` line) and nothing else.
func expectOneLineError(_ result: ToolResult, containing fragment: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status != 0, "exit status", sourceLocation: sourceLocation)
    let lines = result.standardError.split(separator: "\n", omittingEmptySubsequences: true)
    #expect((1...2).contains(lines.count), "stderr: \(result.standardError)", sourceLocation: sourceLocation)
    #expect(lines.first?.hasPrefix("error: ") == true, "stderr: \(result.standardError)", sourceLocation: sourceLocation)
    if lines.count == 2 {
        #expect(lines[1].hasPrefix("hint: "), "stderr: \(result.standardError)", sourceLocation: sourceLocation)
    }
    #expect(result.standardError.contains(fragment), "stderr: \(result.standardError)", sourceLocation: sourceLocation)
}

/// Every file under `folder` with its size and content hash: compared before and after a command
/// to prove that it changed nothing on disk.
func folderState(_ folder: String) throws -> [String: String] {
    var state: [String: String] = [:]
    guard let enumerator = FileManager.default.enumerator(atPath: folder) else { return state }
    while let relative = enumerator.nextObject() as? String {
        if relative.hasPrefix(".stdout-") || relative.hasPrefix(".stderr-") || relative.hasPrefix(".stdin-") { continue }
        let path = "\(folder)/\(relative)"
        var isDirectory: ObjCBool = false
        FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if isDirectory.boolValue {
            state[relative + "/"] = "folder"
        } else {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in data { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            state[relative] = "\(data.count):\(hash)"
        }
    }
    return state
}

/// The output of `sqlite3 PATH SQL`, trimmed.
func sqlite3(_ path: String, _ sql: String, in folder: ScratchFolder) throws -> String {
    let result = try runTool("sqlite3", [path, sql], in: folder)
    return result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
}
