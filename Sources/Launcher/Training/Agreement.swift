import Collective

/// A failure that every rank knows about, because the ranks agreed on it.
///
/// Only the rank that failed carries the message (`local`); the others
/// carry nil and exit quietly, so a message is printed once per job.
struct AgreedFailure: Error, CustomStringConvertible {
    /// The rank whose error ends the job (the lowest that failed).
    let rank: Int
    /// The error itself on that rank; nil on every other rank.
    let local: Error?

    var description: String {
        local.map { "\($0)" } ?? "rank \(rank) failed"
    }
}

extension Communicator {
    /// Runs `body` on every rank, then agrees on whether any rank failed.
    ///
    /// Every rank makes the same one collective call whatever happened
    /// locally, so none is left waiting: on success all ranks go on; on
    /// failure all throw `AgreedFailure` naming the lowest failing rank.
    func agreeing<T>(_ body: () throws -> T) throws -> T {
        var result: Result<T, Error>
        do {
            result = .success(try body())
        } catch {
            result = .failure(error)
        }
        var lowest: [Int64] = [Int64(size)]
        if case .failure = result { lowest[0] = Int64(rank) }
        try allreduce(&lowest, .min)
        let failed = Int(lowest[0])
        switch result {
        case .success(let value) where failed == size:
            return value
        case .failure(let error) where failed == rank:
            throw AgreedFailure(rank: rank, local: error)
        default:
            throw AgreedFailure(rank: failed, local: nil)
        }
    }
}

extension Communicator {
    /// The check every rank makes before each training step, in one tiny
    /// all-reduce: runs `body` (this rank's part: test faults, say), then
    /// agrees on whether any rank failed and on any stop signal received.
    ///
    /// Returns the agreed stop signal (the largest number any rank has
    /// received, 0 for none), so every rank stops before the same step.
    /// Throws `AgreedFailure` on every rank when `body` threw on any.
    func agreeingOnStep(_ body: () throws -> Void) throws -> Int32 {
        var failure: Error?
        do { try body() } catch { failure = error }
        // One reduction with max: the lowest failing rank travels as
        // minus itself (-size for none), the signal as itself.
        // A tuple, not an array: this runs before every step, which
        // should allocate nothing.
        var flags: (Int64, Int64) = (
            -Int64(failure == nil ? size : rank), Int64(StopSignals.received)
        )
        try withUnsafeMutablePointer(to: &flags) { pair in
            try pair.withMemoryRebound(to: Int64.self, capacity: 2) {
                try allreduce(
                    UnsafeMutableBufferPointer(start: $0, count: 2), .max)
            }
        }
        let failed = Int(-flags.0)
        if failed < size {
            throw AgreedFailure(
                rank: failed, local: failed == rank ? failure : nil)
        }
        return Int32(flags.1)
    }
}
