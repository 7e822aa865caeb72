import Foundation
import OffsiteCore

/// `offsite keygen`: a new age X25519 identity written 0600; prints the public recipient.
enum KeygenCommand {
    static let help = """
    usage: offsite keygen [--output FILE]

    Generates a new age X25519 identity in the age-keygen file format and writes it to FILE
    (default: identity.txt in the current folder) with mode 0600; an existing file is never
    replaced. Prints the public recipient (age1…) to put in encryption.recipients.

    Keep the identity file away from the host being backed up: the agent needs only the
    recipient to back up, and whoever holds the identity can read every backup.
    """

    static func run(_ arguments: [String]) throws -> Int32 {
        let parsed = try Arguments(arguments, options: ["output"], flags: [])
        if parsed.has("help") { print(help); return 0 }
        try parsed.expectNoPositional()
        let output = parsed.value("output") ?? "identity.txt"
        let identity = AgeX25519Identity.generate()
        let contents = AgeIdentityFile.render(identity: identity, created: Date())
        let file = try FileSink(creating: output)
        do {
            try file.write(Data(contents.utf8))
            try file.finish()
        } catch {
            file.discard()
            throw error
        }
        var standardError = FileHandle.standardError
        print("wrote a new identity to \(output) (mode 0600)", to: &standardError)
        print(identity.recipient.encoded)
        return 0
    }
}
