import CMPI

// Collectives that read from and write into buffers the caller owns and
// reuses, for the training step: they allocate nothing per call (beyond
// what MPI does inside), unlike the Array-returning forms, which size
// their result from counts they first gather themselves.
//
// Each takes counts that every rank already knows, so no call of its own
// is spent agreeing on them. Counts and displacements go to MPI as C int:
// a call whose values add up to more than the piece limit (`Int32.max`,
// or less with `HEADLINE_COLLECTIVE_MAX_CHUNK`) goes in rounds through a
// scratch buffer (which allocates; only such huge calls pay for it). The
// gathers decide that from totals every rank shares. `alltoallVariable`
// knows only this rank's own traffic: under a lowered limit it agrees on
// the largest with one more reduction; under `Int32.max` a rank whose
// traffic exceeds it (8 GiB of floats) refuses alone, which ends the job
// as any unagreed failure does (MPI_Abort) rather than leaving a rank
// waiting.

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
        guard send.count > 0 else { return }
        if send.count * size > maxChunk {
            let counts = [Int](repeating: send.count, count: size)
            try gatherInPieces(send, counts: counts, into: result, type, comm)
            return
        }
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
        if total > maxChunk {
            try gatherInPieces(
                send, counts: counts.map { Int($0) }, into: result, type, comm)
            return
        }
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
        guard total > 0 else { return }
        if total > maxChunk {
            // This rank's values move out of the way first, as if sent.
            let start = counts[0..<rank].reduce(0) { $0 + Int($1) }
            let own = Array(buffer[start..<(start + Int(counts[rank]))])
            try own.withUnsafeBufferPointer {
                try gatherInPieces(
                    $0, counts: counts.map { Int($0) }, into: buffer, type,
                    comm)
            }
            return
        }
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
        var largest = max(sent, received)
        if maxChunk < Int(Int32.max) {
            var agreed = Int64(largest)
            try withUnsafeMutablePointer(to: &agreed) {
                try allreduce(
                    UnsafeMutableBufferPointer(start: $0, count: 1), .max)
            }
            largest = Int(agreed)
        }
        if largest > maxChunk && maxChunk < Int(Int32.max) {
            try alltoallInRounds(
                send, sendCounts: sendCounts, into: receive,
                receiveCounts: receiveCounts, largest: largest, type, comm)
            return
        }
        try requireIntCount(largest, operation)
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

    // MARK: Calls above the piece limit

    private func gatherInPieces<T>(
        _ send: UnsafeBufferPointer<T>, counts: [Int],
        into result: UnsafeMutableBufferPointer<T>, _ type: MPI_Datatype,
        _ comm: MPI_Comm
    ) throws {
        var offsets = [Int](repeating: 0, count: size)
        for k in 1..<max(size, 1) {
            offsets[k] = offsets[k - 1] + counts[k - 1]
        }
        try gatherPieces(
            send, counts: counts, offsets: offsets,
            total: counts.reduce(0, +), into: result, type: type, comm: comm)
    }

    /// `alltoallVariable` in rounds of at most `maxChunk / size` values per
    /// pair, so no round's counts or displacements pass the limit; every
    /// rank runs the same number of rounds, from the agreed `largest`.
    private func alltoallInRounds<T>(
        _ send: UnsafeBufferPointer<T>, sendCounts: UnsafeBufferPointer<Int32>,
        into receive: UnsafeMutableBufferPointer<T>,
        receiveCounts: UnsafeBufferPointer<Int32>, largest: Int,
        _ type: MPI_Datatype, _ comm: MPI_Comm
    ) throws {
        let step = max(1, maxChunk / size)
        func starts(_ counts: UnsafeBufferPointer<Int32>) -> [Int] {
            var at = 0
            return counts.map { count in
                defer { at += Int(count) }
                return at
            }
        }
        let sendStart = starts(sendCounts)
        let receiveStart = starts(receiveCounts)
        let outgoing = UnsafeMutablePointer<T>.allocate(capacity: step * size)
        let incoming = UnsafeMutablePointer<T>.allocate(capacity: step * size)
        defer {
            outgoing.deallocate()
            incoming.deallocate()
        }
        var sendRound = [Int32](repeating: 0, count: size)
        var receiveRound = [Int32](repeating: 0, count: size)
        var done = 0
        while done < largest {
            var at = 0
            for k in 0..<size {
                let n = min(max(Int(sendCounts[k]) - done, 0), step)
                sendRound[k] = Int32(n)
                if n > 0 {
                    (outgoing + at).update(
                        from: send.baseAddress! + sendStart[k] + done, count: n)
                }
                at += n
                receiveRound[k] = Int32(
                    min(max(Int(receiveCounts[k]) - done, 0), step))
            }
            try sendRound.withUnsafeBufferPointer { sendRound in
                try receiveRound.withUnsafeBufferPointer { receiveRound in
                    try withDisplacements(sendRound) { sendDisplacements in
                        try withDisplacements(receiveRound) {
                            receiveDisplacements in
                            try check(
                                MPI_Alltoallv(
                                    outgoing, sendRound.baseAddress,
                                    sendDisplacements, type, incoming,
                                    receiveRound.baseAddress,
                                    receiveDisplacements, type, comm),
                                "MPI_Alltoallv")
                        }
                    }
                }
            }
            at = 0
            for k in 0..<size {
                let n = Int(receiveRound[k])
                if n > 0 {
                    (receive.baseAddress! + receiveStart[k] + done).update(
                        from: incoming + at, count: n)
                }
                at += n
            }
            done += step
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
