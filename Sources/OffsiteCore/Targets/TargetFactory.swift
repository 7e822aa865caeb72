import Foundation

/// Builds the target a configuration entry describes.
public func makeTarget(_ config: TargetConfig) throws -> any Target {
    switch config.location {
    case let .folder(path):
        return FileTarget(name: config.name, root: path)
    case .s3:
        return try S3Target(config: config)
    case .webDAV:
        throw TargetError.failed(target: config.name, operation: "open",
                                 detail: "\(config.kind.rawValue) targets are not available in this build yet",
                                 hint: "use an s3:// or file:// target", isPermanent: true)
    }
}
