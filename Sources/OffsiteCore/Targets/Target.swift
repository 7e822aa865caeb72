import Foundation

/// One object on a target, as a listing reports it.
public struct RemoteObject: Sendable, Equatable, Hashable {
    /// The key relative to the target's root, with `/` separators (`crm/20261122T031700Z-manual.sqlite3.gz.age`).
    public var key: String
    /// Size in bytes.
    public var size: Int64
    /// Last modification time, when the target reports one.
    public var modified: Date?

    /// Creates a listing entry.
    public init(key: String, size: Int64, modified: Date? = nil) {
        self.key = key
        self.size = size
        self.modified = modified
    }
}

/// An upload in progress: bytes are written to it, then it is committed under its final key or
/// aborted. Nothing is visible under the final key before `commit()` returns.
public protocol TargetUpload: ByteSink {
    /// Makes the uploaded bytes visible under the final key, atomically. Call after `finish()`.
    func commit() throws
    /// Discards the upload and whatever temporary state it left; never throws.
    func abort()
}

/// The storage seam every backend implements: write a stream, list, read a stream, delete.
///
/// Contract for every implementation:
/// - keys are relative to the target's root and use `/` between parts;
/// - a missing object makes `download` and `size` throw `TargetError.notFound`;
/// - `delete` of a missing object succeeds;
/// - `list` returns every object under the prefix or throws: never a partial listing;
/// - an upload that is aborted or fails leaves nothing behind under the final key.
public protocol Target: AnyObject, Sendable {
    /// The configured name (`s3`, `nas`) or, for a target given as a URL, the URL.
    var name: String { get }
    /// The target's location, without credentials, for messages.
    var location: String { get }
    /// Starts an upload to `key`.
    func makeUpload(key: String) throws -> any TargetUpload
    /// Starts an upload to `key` of about `expectedSize` bytes (nil: unknown), for targets that
    /// size their buffers by it (S3 parts); the default ignores the size.
    func makeUpload(key: String, expectedSize: Int64?) throws -> any TargetUpload
    /// Every object whose key starts with `prefix` (empty: all).
    func list(prefix: String) throws -> [RemoteObject]
    /// Streams the object at `key` into `sink` without finishing the sink.
    func download(key: String, into sink: any ByteSink) throws
    /// Deletes the object at `key`; succeeds when it is already gone.
    func delete(key: String) throws
}

extension Target {
    /// Starts an upload to `key`, ignoring the size (see the requirement).
    public func makeUpload(key: String, expectedSize: Int64?) throws -> any TargetUpload {
        try makeUpload(key: key)
    }
}

/// Errors every target maps its own failures onto.
public enum TargetError: UserFacingError, Equatable {
    /// The object does not exist.
    case notFound(target: String, key: String)
    /// The target refused the credentials.
    case authentication(target: String, detail: String)
    /// Any other failure, with whether retrying could help.
    case failed(target: String, operation: String, detail: String, hint: String?, isPermanent: Bool)

    public var message: String {
        switch self {
        case let .notFound(target, key):
            return "target \(target): \(key) not found"
        case let .authentication(target, detail):
            return "target \(target): authentication failed: \(detail)"
        case let .failed(target, operation, detail, _, _):
            return "target \(target): \(operation) failed: \(detail)"
        }
    }

    public var hint: String? {
        switch self {
        case .notFound: return nil
        case .authentication: return "check the credentials configured for this target"
        case let .failed(_, _, _, hint, _): return hint
        }
    }

    /// Whether retrying the same request cannot succeed.
    public var isPermanent: Bool {
        switch self {
        case .notFound, .authentication: return true
        case let .failed(_, _, _, _, permanent): return permanent
        }
    }
}
