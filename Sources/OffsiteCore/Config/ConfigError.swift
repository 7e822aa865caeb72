import Foundation

/// A configuration problem: where it is (the file and the key path, such as
/// `targets[1].retention.daily`, or an environment variable's name) and what is wrong. Messages
/// never contain a secret's value or a variable's value.
public struct ConfigError: UserFacingError, Equatable {
    /// The configuration file, or nil when the configuration came from the environment or memory.
    public var file: String?
    /// The key path (`targets[1].retention.daily`) or environment variable the problem is at;
    /// empty for the document as a whole.
    public var keyPath: String
    /// What is wrong (`expected an integer`).
    public var problem: String
    /// What to try, or nil.
    public var hint: String?

    /// Creates an error at `keyPath`.
    public init(file: String? = nil, keyPath: String, problem: String, hint: String? = nil) {
        self.file = file
        self.keyPath = keyPath
        self.problem = problem
        self.hint = hint
    }

    /// `FILE: KEYPATH: PROBLEM`, leaving out the parts that are absent.
    public var message: String {
        var text = ""
        if let file { text += "\(file): " }
        if !keyPath.isEmpty { text += "\(keyPath): " }
        return text + problem
    }

    /// The same error, said of `file`.
    func inFile(_ file: String?) -> ConfigError {
        var copy = self
        copy.file = file
        return copy
    }
}
