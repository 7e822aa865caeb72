import Foundation

// From the capture side's spool to the objects a target receives: the two calls the shipping and
// compaction steps make. Each reads the spool's frames one at a time (memory: one page).

extension ChangeTransaction {
    /// The most transactions one change object holds safely: the metadata of 2 500 transactions
    /// always fits the gzip header's 64 KiB (frame numbers of up to 9 digits, 13-digit times).
    public static let maximumPerObject = 2500
}

extension ChangeSpool {
    /// Writes change object `sequence` of the chain of `base` holding `transactions` (committed
    /// transactions of this spool, in commit order, at most `ChangeTransaction.maximumPerObject`)
    /// into `sink`, which is finished: compressed at `compressionLevel`, encrypted as `encryption`
    /// says. `previous` is the base's link for object 1 (`ChainLink(base:)` of the backup report's
    /// `shippedChecksum`), else `.object` of the digest this returned for the object before.
    /// Returns the object's name (for its key and the outbox) and the SHA-256 of its WAL bytes.
    public func writeChangeObject(_ transactions: some Collection<Transaction>, database: String, base: BackupID, sequence: Int,
                                  previous: ChainLink, compressionLevel: Int, encryption: PayloadEncryption,
                                  into sink: any ByteSink) throws -> (name: ChangeObjectName, digest: ChainDigest) {
        let metadata = ChangeObjectMetadata.change(
            database: database, base: base, sequence: sequence, previous: previous, pageSize: pageSize,
            transactions: ChangeTransaction.list(transactions.map { (frames: $0.frameCount, commitTime: milliseconds(of: $0.committedAt)) }))
        let writer = try ChangeObjectWriter(metadata: metadata, compressionLevel: compressionLevel, encryption: encryption, into: sink)
        try forEachFrame(of: transactions) { pageNumber, commitSize, page in
            try writer.append(pageNumber: pageNumber, commitSize: commitSize, page: page)
        }
        return (metadata.objectName(format: encryption.format), try writer.finish())
    }

    /// Hands the frames of `transactions` to `compactor`, in order (see `ChangeCompactor`).
    public func feed(_ transactions: some Collection<Transaction>, to compactor: ChangeCompactor) throws {
        try forEachFrame(of: transactions) { pageNumber, commitSize, page in
            try compactor.append(pageNumber: pageNumber, commitSize: commitSize, page: page)
        }
    }

    /// Calls `body` with every frame of `transactions`: page number, the database size on each
    /// transaction's last frame (0 on the others), and the page (valid during the call).
    private func forEachFrame(of transactions: some Collection<Transaction>,
                              _ body: (UInt32, UInt32, UnsafeRawBufferPointer) throws -> Void) throws {
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: 16)
        defer { page.deallocate() }
        for transaction in transactions {
            for number in transaction.firstFrame..<transaction.endFrame {
                let pageNumber = try readFrame(number, into: page)
                try body(pageNumber, number == transaction.endFrame - 1 ? transaction.pageCount : 0, UnsafeRawBufferPointer(page))
            }
        }
    }
}
