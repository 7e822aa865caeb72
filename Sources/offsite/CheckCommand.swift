import Foundation
import OffsiteCore

/// `offsite check`: validates the configuration and probes every target.
enum CheckCommand {
    static let help = """
    usage: offsite check [--config FILE] [--target NAME]

    Validates the configuration (errors name the key path) and probes each target: writes a
    small object, lists it, reads it back and deletes it. Also checks that each database is a
    SQLite file, that each file set's folder can be read, that the encryption settings are usable
    and that the identity file, if any, can be read.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["config", "target"], flags: [])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let setup = try Setup(parsed)
        guard setup.config != nil else {
            throw UsageError("no configuration to check", hint: "give --config FILE or set OFFSITE_CONFIG")
        }
        print("configuration: ok")
        var failures = 0
        func report(_ label: String, _ body: () throws -> String) {
            do {
                print("\(label): \(try body())")
            } catch {
                failures += 1
                print("\(label): FAILED: \(describe(error))")
                if let hint = (error as? UserFacingError)?.hint { print("  hint: \(hint)") }
            }
        }
        report("encryption") {
            switch try setup.encryption() {
            case let .recipients(recipients): return "age, \(recipients.count) recipient(s)"
            case let .passphrase(_, workFactor): return "age passphrase (scrypt work factor \(workFactor))"
            case .none: return "NONE: backups are stored unencrypted, as configured"
            }
        }
        if case let .age(age)? = setup.config?.encryption, age.identityFile != nil {
            report("identity") { "\(try setup.decryptionKeys().identities.count) identity(ies) readable" }
        }
        for database in (try? setup.databases()) ?? [] {
            report("database \(database.name)") {
                guard FileManager.default.fileExists(atPath: database.path) else { return "\(database.path) does not exist yet" }
                guard hasSQLiteHeader(database.path) else { throw UsageError("\(database.path) is not a SQLite database") }
                return database.path
            }
        }
        for set in try setup.fileSets() {
            report("file set \(set.name)") {
                var status = stat()
                guard stat(set.path, &status) == 0 else { return "\(set.path) does not exist yet" }
                guard (status.st_mode & S_IFMT) == S_IFDIR else { throw FileSetError.rootMissing(set: set.name, path: set.path) }
                guard access(set.path, R_OK | X_OK) == 0 else { throw UsageError("\(set.path) cannot be read by this user") }
                return set.path + (set.exclude.texts.isEmpty ? "" : " (excluding \(set.exclude.texts.joined(separator: ", ")))")
            }
        }
        for target in try setup.targets() {
            report("target \(target.name)") { try probe(target) }
        }
        return failures == 0 ? 0 : 1
    }

    /// Writes, lists, reads and deletes a small object; returns what it took. The probe sits at the
    /// target's root under a name no backup has and that no listing hides (not a dot-file, no
    /// folder of its own), so nothing of it is left behind.
    static func probe(_ target: any Target) throws -> String {
        let started = Date()
        let key = "offsite-check-\(UUID().uuidString).txt"
        let payload = Data("offsite check \(ISO8601DateFormatter().string(from: started))\n".utf8)
        let upload = try target.makeUpload(key: key)
        do {
            try upload.write(payload)
            try upload.finish()
            try upload.commit()
        } catch {
            upload.abort()
            throw error
        }
        defer { try? target.delete(key: key) }
        let listed = try target.list(prefix: key)
        guard listed.contains(where: { $0.key == key && $0.size == Int64(payload.count) }) else {
            throw UsageError("the probe object was written but is not listed with its size")
        }
        let sink = DataSink()
        try target.download(key: key, into: sink)
        guard sink.data == payload else { throw UsageError("the probe object read back differs from what was written") }
        try target.delete(key: key)
        return "write, list, read, delete ok (\(String(format: "%.2f", Date().timeIntervalSince(started))) s) at \(target.location)"
    }
}
