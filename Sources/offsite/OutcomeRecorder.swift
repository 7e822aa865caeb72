import Foundation
import OffsiteCore

/// What `backup` and `prune` run by hand do with their outcomes beyond printing them: with a local
/// folder, record them in its state file (beside a running agent too: the store serialises
/// writers), so `status` and `healthcheck` count them; with a webhook, send failures (and, with
/// `onSuccess`, successes) and wait for the delivery before the command exits.
final class OutcomeRecorder {
    private let store: StateStore?
    private let notifier: WebhookNotifier?
    private let onSuccess: Bool

    init(_ setup: Setup) {
        store = setup.localFolder.map { StateStore(folder: $0) }
        onSuccess = setup.config?.notify?.onSuccess ?? false
        notifier = setup.config?.notify.map { notify in
            WebhookNotifier(url: notify.webhookURL.value) { notification, reason in
                var standardError = FileHandle.standardError
                print("warning: the webhook did not take the \(notification.event) notification: \(reason)", to: &standardError)
            }
        }
    }

    /// Records what `report` shipped of `database`: a success or a failure per target.
    func backupFinished(_ report: BackupReport, database: String) {
        let now = Date()
        record { state in
            state.recordSnapshot(of: database, SnapshotRecord(time: report.snapshot.readStartedAt, backupID: report.id.description,
                                                              bytes: report.snapshot.byteCount, pageCount: Int64(report.snapshot.pageCount),
                                                              pageSize: report.snapshot.pageSize))
            state.recordBackup(report, database: database, at: now)
            for upload in report.uploads {
                if let error = upload.error {
                    state.recordFailure(database: database, target: upload.target, at: now, reason: describe(error))
                } else {
                    state.recordSuccess(database: database, target: upload.target, at: now, backupID: report.id.description,
                                        bytes: upload.size ?? 0)
                }
            }
            for reason in report.localPruneFailures {
                state.recordProblem("local-rotation", database: database, reason: reason, at: now)
            }
        }
        for upload in report.uploads {
            if let error = upload.error {
                notifier?.send(Notification(event: "backup.failed", database: database, target: upload.target,
                                            backupID: report.id.description, reason: describe(error)))
            } else if onSuccess {
                notifier?.send(Notification(event: "backup.succeeded", database: database, target: upload.target,
                                            backupID: report.id.description))
            }
        }
        for reason in report.localPruneFailures {
            notifier?.send(Notification(event: "local-rotation.failed", database: database, reason: reason))
        }
    }

    /// Records a backup of `database` that failed before anything was shipped (the snapshot).
    func backupFailed(database: String, targets: [String], error: Error) {
        let now = Date()
        let reason = describe(error)
        record { state in
            for target in targets { state.recordFailure(database: database, target: target, at: now, reason: reason) }
        }
        for target in targets {
            notifier?.send(Notification(event: "backup.failed", database: database, target: target, reason: reason))
        }
    }

    /// Records what a file set backup could not do: targets that failed, entries left out (they are
    /// problems of the set, counted in `status` and sent to the webhook).
    func fileSetBackupFinished(_ report: FileSetBackupReport) {
        let now = Date()
        let failed = report.uploads.compactMap { upload in upload.error.map { (upload.target, describe($0)) } }
        let skipped = report.skipped.filter { if case .unsupported = $0.reason { return false } else { return true } }
        record { state in
            for (target, reason) in failed { state.recordProblem("files-backup", database: report.set, target: target, reason: reason, at: now) }
            for entry in skipped { state.recordProblem("files-read", database: report.set, reason: entry.description, at: now) }
        }
        for (target, reason) in failed {
            notifier?.send(Notification(event: "backup.failed", database: report.set, target: target,
                                        backupID: report.id.description, reason: reason))
        }
        if !skipped.isEmpty {
            let shown = skipped.prefix(5).map(\.description).joined(separator: "; ")
            notifier?.send(Notification(event: "files.skipped", database: report.set, backupID: report.id.description,
                                        reason: "\(skipped.count) left out: \(shown)\(skipped.count > 5 ? "; …" : "")"))
        }
        if onSuccess {
            for upload in report.uploads where upload.error == nil {
                notifier?.send(Notification(event: "backup.succeeded", database: report.set, target: upload.target,
                                            backupID: report.id.description))
            }
        }
    }

    /// Records a file set backup that failed before anything was shipped.
    func fileSetBackupFailed(set: String, targets: [String], error: Error) {
        let now = Date()
        let reason = describe(error)
        record { state in
            for target in targets { state.recordProblem("files-backup", database: set, target: target, reason: reason, at: now) }
        }
        for target in targets {
            notifier?.send(Notification(event: "backup.failed", database: set, target: target, reason: reason))
        }
    }

    /// Records a failed prune (a listing or a deletion) of `database` on `target`.
    func pruneFailed(database: String?, target: String, error: Error) {
        let now = Date()
        let reason = describe(error)
        record { $0.recordProblem("prune", database: database, target: target, reason: reason, at: now) }
        notifier?.send(Notification(event: "prune.failed", database: database ?? "", target: target, reason: reason))
    }

    /// Waits (a few seconds at most) for the webhook to take what was sent.
    func finish() {
        guard let notifier else { return }
        if !notifier.drain(timeout: 10) {
            var standardError = FileHandle.standardError
            print("warning: the webhook did not answer in time; some notifications were not delivered", to: &standardError)
        }
        notifier.stop()
    }

    private func record(_ body: @escaping (inout AgentState) -> Void) {
        guard let store else { return }
        do {
            try store.update(body)
        } catch {
            var standardError = FileHandle.standardError
            print("error: could not record the outcome in \(store.path): \(describe(error))", to: &standardError)
        }
    }
}
