import Foundation

/// Builds the target a configuration entry describes. WebDAV uploads spool into `spoolFolder`
/// (nil: the system's temporary folder).
public func makeTarget(_ config: TargetConfig, spoolFolder: URL? = nil) throws -> any Target {
    switch config.location {
    case let .folder(path):
        return FileTarget(name: config.name, root: path)
    case .s3:
        return try S3Target(config: config)
    case .webDAV:
        return try WebDAVTarget(config: config, spoolFolder: spoolFolder)
    }
}
