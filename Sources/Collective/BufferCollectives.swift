import CMPI

// Collectives that read from and write into buffers the caller owns and
// reuses, for the training step: they allocate nothing per call (beyond
// what MPI does inside), unlike the Array-returning forms, which size
// their result from counts they first gather themselves.
//
// Each takes counts that every rank already knows, so no call of its own
// is spent agreeing on them. Counts and displacements go to MPI as C int,
// and these forms do not split a call into pieces: one whose values add
// up to more than the piece limit (`Int32.max`, or
// `HEADLINE_COLLECTIVE_MAX_CHUNK`) is refused with an error, never cut
// short. For the gathers every rank computes the same totals and refuses
// together; `alltoallVariable` checks this rank's own traffic, so a
// refusal there may come from one rank alone, and ends the job as any
// unagreed failure does (MPI_Abort) rather than leaving a rank waiting.

extension Communicator {
    /// Every rank contributes `send`, the same count on each (not checked
    /// across ranks: that would cost a collective); `result`, which must
    /// hold `size · send.count` values, receives rank 0's values, then
    /// rank 1's, and so on.
    public func allgather<T: CollectiveScalar>(
        _ send: UnsafeBufferPointer<T>,
        into result: UnsafeMutableBufferPointer<T>
    ) throws {
        let operation = "allgather(into:)"
        let type = try mpiDatatype(T.self, for: operation)
        try requireRoom(result.count, send.count * size, operation)
        guard let comm = try activeComm(operation) else {
            copy(send, to: result, at: 0)
            return
        }
        try requireIntCount(send.count * size, operation)
        guard send.count > 0 else { return }
        try check(
            MPI_Allgather(
                send.baseAddress, Int32(send.count), type, result.baseAddress,
                Int32(send.count), type, comm),
            "MPI_Allgather")
    }

    /// Every rank contributes `send`, `counts[k]` values on rank k, with
    /// the same `counts` on every rank; `result` receives rank 0's values,
    /// then rank 1's, and so on (`MPI_Allgatherv`). `result` must hold the
    /// sum of the counts.
    public func allgatherVariable<T: CollectiveScalar>(
        _ send: UnsafeBufferPointer<T>, counts: UnsafeBufferPointer<Int32>,
        into result: UnsafeMutableBufferPointer<T>
    ) throws {
        let operation = "allgatherVariable(counts:into:)"
        let type = try mpiDatatype(T.self, for: operation)
        let total = try checkCounts(counts, own: send.count, operation)
        try requireRoom(result.count, total, operation)
        guard let comm = try activeComm(operation) else {
            copy(send, to: result, at: 0)
            return
        }
        try requireIntCount(total, operation)
        // A rank with nothing to send still passes a valid address.
        var spare: Int64 = 0
        try withUnsafeMutablePointer(to: &spare) { spareAddress in
            try withDisplacements(counts) { displacements in
                try check(
                    MPI_Allgatherv(
                        send.baseAddress.map { UnsafeRawPointer($0) }
                            ?? UnsafeRawPointer(spareAddress),
                        Int32(send.count), type, result.baseAddress,
                        counts.baseAddress, displacements, type, comm),
                    "MPI_Allgatherv")
            }
        }
    }

    /// As `allgatherVariable(_:counts:into:)`, with this rank's values
    /// already in place in `buffer` (at the sum of the lower ranks'
    /// counts), so MPI copies nothing within the rank (`MPI_IN_PLACE`).
    public func allgatherVariableInPlace<T: CollectiveScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>,
        counts: UnsafeBufferPointer<Int32>
    ) throws {
        let operation = "allgatherVariableInPlace"
        let type = try mpiDatatype(T.self, for: operation)
        let total = try checkCounts(counts, own: nil, operation)
        try requireRoom(buffer.count, total, operation)
        guard let comm = try activeComm(operation) else { return }
        try requireIntCount(total, operation)
        guard total > 0 else { return }
        try withDisplacements(counts) { displacements in
            try check(
                MPI_Allgatherv(
                    cmpi_in_place(), 0, type, buffer.baseAddress,
                    counts.baseAddress, displacements, type, comm),
                "MPI_Allgatherv")
        }
    }

    /// Every rank sends `sendCounts[k]` values to rank k, taken from
    /// `send` in rank order (the values for rank 0 first), and receives
    /// `receiveCounts[k]` values from rank k into `receive`, also in rank
    /// order (`MPI_Alltoallv`). Rank j's `receiveCounts[k]` must equal
    /// rank k's `sendCounts[j]`; the caller derives both from facts every
    /// rank shares.
    public func alltoallVariable<T: CollectiveScalar>(
        _ send: UnsafeBufferPointer<T>, sendCounts: UnsafeBufferPointer<Int32>,
        into receive: UnsafeMutableBufferPointer<T>,
        receiveCounts: UnsafeBufferPointer<Int32>
    ) throws {
        let operation = "alltoallVariable"
        let type = try mpiDatatype(T.self, for: operation)
        let sent = try checkCounts(sendCounts, own: nil, operation)
        let received = try checkCounts(receiveCounts, own: nil, operation)
        try requireRoom(send.count, sent, operation)
        try requireRoom(receive.count, received, operation)
        guard let comm = try activeComm(operation) else {
            // A world of one sends its one piece to itself.
            guard sendCounts[0] == receiveCounts[0] else {
                throw CollectiveError(
                    operation: operation, code: nil,
                    message: "a world of one sends \(sendCounts[0]) values "
                        + "to itself but expects \(receiveCounts[0])")
            }
            copy(
                UnsafeBufferPointer(rebasing: send[0..<Int(sent)]),
                to: receive, at: 0)
            return
        }
        try requireIntCount(max(sent, received), operation)
        // MPI reads no value for a zero count, but the addresses must
        // still be valid ones.
        var spare: Int64 = 0
        try withUnsafeMutablePointer(to: &spare) { spareAddress in
            try withDisplacements(sendCounts) { sendDisplacements in
                try withDisplacements(receiveCounts) { receiveDisplacements in
                    try check(
                        MPI_Alltoallv(
                            send.baseAddress.map { UnsafeRawPointer($0) }
                                ?? UnsafeRawPointer(spareAddress),
                            sendCounts.baseAddress, sendDisplacements, type,
                            receive.baseAddress.map {
                                UnsafeMutableRawPointer($0)
                            } ?? UnsafeMutableRawPointer(spareAddress),
                            receiveCounts.baseAddress, receiveDisplacements,
                            type, comm),
                        "MPI_Alltoallv")
                }
            }
        }
    }

    // MARK: Argument checks

    /// The sum of `counts`, after checking there is one per rank, none
    /// negative, and (when `own` is given) this rank's equals `own`.
    private func checkCounts(
        _ counts: UnsafeBufferPointer<Int32>, own: Int?, _ operation: String
    ) throws -> Int {
        guard counts.count == size else {
            throw CollectiveError(
                operation: operation, code: nil,
                message: "\(counts.count) counts for \(size) ranks")
        }
        var total = 0
        for (k, count) in counts.enumerated() {
            guard count >= 0 else {
                throw CollectiveError(
                    operation: operation, code: nil,
                    message: "count \(count) for rank \(k) is negative")
            }
            total += Int(count)
        }
        if let own, own != Int(counts[rank]) {
            throw CollectiveError(
                operation: operation, code: nil,
                message: "rank \(rank) sends \(own) values but the counts "
                    + "say \(counts[rank])")
        }
        return total
    }

    private func requireRoom(_ room: Int, _ needed: Int, _ operation: String)
        throws
    {
        guard room >= needed else {
            throw CollectiveError(
                operation: operation, code: nil,
                message: "the buffer holds \(room) values; \(needed) needed")
        }
    }

    /// MPI's counts and displacements are C int. Every rank computes the
    /// same totals, so every rank refuses together.
    private func requireIntCount(_ total: Int, _ operation: String) throws {
        guard total <= maxChunk else {
            throw CollectiveError(
                operation: operation, code: nil,
                message: "\(total) values in one call; at most \(maxChunk) "
                    + "are supported")
        }
    }

    /// Runs `body` with the displacements (prefix sums) of `counts`, on
    /// the stack for the usual small worlds.
    private func withDisplacements<R>(
        _ counts: UnsafeBufferPointer<Int32>,
        _ body: (UnsafePointer<Int32>) throws -> R
    ) throws -> R {
        try withUnsafeTemporaryAllocation(
            of: Int32.self, capacity: max(counts.count, 1)
        ) { displacements in
            var offset: Int32 = 0
            for k in 0..<counts.count {
                displacements[k] = offset
                offset += counts[k]
            }
            return try body(UnsafePointer(displacements.baseAddress!))
        }
    }

    private func copy<T>(
        _ source: UnsafeBufferPointer<T>,
        to target: UnsafeMutableBufferPointer<T>, at offset: Int
    ) {
        guard let from = source.baseAddress, let to = target.baseAddress
        else { return }
        (to + offset).update(from: from, count: source.count)
    }
}
