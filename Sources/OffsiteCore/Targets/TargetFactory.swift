import Foundation

/// Builds the target a configuration entry describes. WebDAV uploads spool into `spoolFolder`
/// (nil: the system's temporary folder).
///
/// `control` reaches every request a remote target makes, for the target's whole life: its
/// cancellation aborts a transfer in flight and the wait before a retry (the agent passes the one
/// it raises after `shutdownTimeout`, so a target that keeps failing cannot hold up the stop), and
/// each retry is told to its `onRetry` (the agent logs it). Given once here rather than to every
/// operation, so the `Target` protocol and its callers stay as they are. A folder target makes
/// no requests: its writes are stopped between chunks by the backup's own cancellation.
public func makeTarget(_ config: TargetConfig, spoolFolder: URL? = nil, control: RequestControl = RequestControl()) throws -> any Target {
    switch config.store {
    case let .folder(path):
        return FileTarget(name: config.name, root: path)
    case let .s3(settings):
        return try S3Target(name: config.name, settings: settings, retryPolicy: RetryPolicy(), control: control)
    case let .webDAV(settings):
        return try WebDAVTarget(name: config.name, settings: settings, spoolFolder: spoolFolder, retryPolicy: RetryPolicy(),
                                control: control)
    }
}
