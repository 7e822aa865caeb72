import Foundation

/// A push-style consumer of bytes. Codecs, uploads and files are sinks chained one into the next,
/// so a backup or a restore streams in constant memory.
public protocol ByteSink: AnyObject {
    /// Consumes `bytes`; the buffer is valid only during the call.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Ends the stream: flushes anything buffered and finishes the next sink in the chain.
    func finish() throws
}

extension ByteSink {
    /// Consumes the bytes of `data`.
    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Consumes the bytes of `bytes`.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }
}

/// An error the command line can show to a person: one line of what failed, and where useful
/// a second line saying what to try.
public protocol UserFacingError: Error, CustomStringConvertible {
    /// What failed, on what, in one line without secrets.
    var message: String { get }
    /// What to try, or nil.
    var hint: String? { get }
}

extension UserFacingError {
    public var hint: String? { nil }
    public var description: String { message }
}

/// A sink that collects everything written into memory; for tests and small payloads.
public final class DataSink: ByteSink {
    /// The bytes written so far.
    public private(set) var data = Data()
    /// Whether `finish()` has been called.
    public private(set) var isFinished = false

    /// Creates an empty sink.
    public init() {}

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        data.append(contentsOf: bytes)
    }

    public func finish() throws {
        isFinished = true
    }
}
