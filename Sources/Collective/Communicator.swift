import CMPI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What this module has done to MPI's lifetime. `world()` and
/// `finalize()` both take the lock, so a finalise cannot overlap the
/// initialisation it would undo.
private final class Lifetime: @unchecked Sendable {
    static let shared = Lifetime()
    let lock = Lock()
    var initializedHere = false
    var finalizedHere = false
}

/// The group of processes that train together, and the collective
/// operations among them.
///
/// In a process that no MPI launcher started (and that does not set
/// `HEADLINE_FORCE_MPI=1`) the world has one process: rank 0, size 1, no
/// MPI call is ever made, and every collective is a no-op or returns its
/// input. Arguments are still checked there, so a bad root or scalar type
/// fails the same way on a laptop as on a cluster.
///
/// Every collective must be called by every rank, in the same order,
/// with matching arguments (same `op`, same root, same counts except for
/// `allgatherVariable`). Calls from several threads must not overlap;
/// MPI is initialised for serialised use, which also covers async code
/// that resumes on a different thread between calls.
public final class Communicator: @unchecked Sendable {
    /// This process's index in the world, in `0..<size`.
    public let rank: Int
    /// The number of processes in the world.
    public let size: Int

    /// True when this process was started by an MPI launcher (mpirun,
    /// srun) and MPI is in use. A singleton forced with
    /// `HEADLINE_FORCE_MPI=1` uses MPI but reports false.
    public var isDistributed: Bool { comm != nil && launched }

    /// The MPI communicator, or nil in a world of one without MPI.
    let comm: MPI_Comm?
    let launched: Bool
    /// The most elements handed to one MPI call.
    let maxChunk: Int

    /// A world of one process that makes no MPI calls.
    init(worldOfOneWithChunkLimit maxChunk: Int = Int(Int32.max)) {
        self.rank = 0
        self.size = 1
        self.comm = nil
        self.launched = false
        self.maxChunk = maxChunk
    }

    private init(
        comm: MPI_Comm, rank: Int, size: Int, launched: Bool,
        maxChunk: Int
    ) {
        self.comm = comm
        self.rank = rank
        self.size = size
        self.launched = launched
        self.maxChunk = maxChunk
    }

    // MARK: World

    /// Built once: MPI can be initialised only once per process, and a
    /// failure to join the world is just as permanent.
    private static let shared: Result<Communicator, CollectiveError> =
        makeWorld()

    /// The process's world. MPI is initialised on the first call only
    /// (unless `MPI_Initialized` says someone else already did), and the
    /// world communicator is set to return errors instead of aborting, so
    /// they arrive as `CollectiveError`. Later calls return the same
    /// object, or rethrow the same error.
    public static func world() throws -> Communicator {
        try shared.get()
    }

    private static func makeWorld() -> Result<Communicator, CollectiveError> {
        let limit = chunkLimit(environmentValue)
        let launched = startedByMPILauncher(environmentValue)
        guard launched || mpiForced(environmentValue) else {
            return .success(Communicator(worldOfOneWithChunkLimit: limit))
        }
        do {
            return .success(try joinMPI(launched: launched, maxChunk: limit))
        } catch let error as CollectiveError {
            return .failure(error)
        } catch {
            return .failure(
                CollectiveError(
                    operation: "world", code: nil, message: "\(error)"))
        }
    }

    private static func joinMPI(launched: Bool, maxChunk: Int) throws
        -> Communicator
    {
        let lifetime = Lifetime.shared
        return try lifetime.lock.withLock {
            var flag: Int32 = 0
            try check(MPI_Finalized(&flag), "MPI_Finalized")
            if flag != 0 {
                throw CollectiveError(
                    operation: "world", code: nil,
                    message: "MPI has already been finalised in this process")
            }
            try check(MPI_Initialized(&flag), "MPI_Initialized")
            if flag == 0 {
                // Serialised, not single-threaded: async callers may
                // resume on another thread between two collectives. A
                // library granting less is accepted rather than refused:
                // the calls never overlap, and refusing would leave the
                // trainer unable to run there at all.
                var provided: Int32 = 0
                try check(
                    MPI_Init_thread(
                        nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided),
                    "MPI_Init_thread")
                lifetime.initializedHere = true
            }
            let world: MPI_Comm = cmpi_comm_world()
            try check(
                MPI_Comm_set_errhandler(world, cmpi_errors_return()),
                "MPI_Comm_set_errhandler")
            var rank: Int32 = 0
            var size: Int32 = 0
            try check(MPI_Comm_rank(world, &rank), "MPI_Comm_rank")
            try check(MPI_Comm_size(world, &size), "MPI_Comm_size")
            return Communicator(
                comm: world, rank: Int(rank), size: Int(size),
                launched: launched, maxChunk: maxChunk)
        }
    }

    /// Finalises MPI if, and only if, this module initialised it and it
    /// is not yet finalised. Safe to call more than once, and a no-op in
    /// a world of one. Collectives called afterwards throw.
    public static func finalize() {
        let lifetime = Lifetime.shared
        lifetime.lock.withLock {
            guard lifetime.initializedHere, !lifetime.finalizedHere else {
                return
            }
            lifetime.finalizedHere = true
            var done: Int32 = 0
            if MPI_Finalized(&done) == MPI_SUCCESS, done == 0 {
                _ = MPI_Finalize()
            }
        }
    }

    /// Whether MPI has been initialised in this process, by anyone. Only
    /// for tests that check a world of one left MPI alone;
    /// `MPI_Initialized` may be called at any time.
    static func mpiHasBeenInitialized() -> Bool {
        var flag: Int32 = 0
        return MPI_Initialized(&flag) == MPI_SUCCESS && flag != 0
    }

    /// The communicator to call MPI on, or nil in a world of one.
    ///
    /// Checks `MPI_Finalized` first because OpenMPI aborts the whole job,
    /// whatever the error handler, when MPI is used after finalising.
    func activeComm(_ operation: String) throws -> MPI_Comm? {
        guard let comm else { return nil }
        var done: Int32 = 0
        try check(MPI_Finalized(&done), "MPI_Finalized")
        if done != 0 {
            throw CollectiveError(
                operation: operation, code: nil,
                message: "MPI has already been finalised")
        }
        return comm
    }

    private func checkRoot(_ root: Int, _ operation: String) throws {
        guard (0..<size).contains(root) else {
            throw CollectiveError(
                operation: operation, code: nil,
                message: "root \(root) is outside the ranks 0..<\(size)")
        }
    }

    // MARK: Reductions

    /// Combines `buffer` element-wise across all ranks, in place: on
    /// return every rank holds the same reduced values. The count must be
    /// the same on every rank. Buffers longer than `Int32.max` elements
    /// go to MPI in several pieces.
    public func allreduce<T: CollectiveScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, _ op: ReductionOp
    ) throws {
        let type = try mpiDatatype(T.self, for: "allreduce")
        guard let comm = try activeComm("allreduce"),
            let base = buffer.baseAddress
        else { return }
        if buffer.count <= maxChunk {
            // The usual case, without the list of pieces: a training step
            // makes several of these calls and should allocate nothing.
            try check(
                MPI_Allreduce(
                    cmpi_in_place(), base, Int32(buffer.count), type,
                    op.mpiOp, comm),
                "MPI_Allreduce")
            return
        }
        for piece in chunks(total: buffer.count, limit: maxChunk) {
            try check(
                MPI_Allreduce(
                    cmpi_in_place(), base + piece.offset, Int32(piece.count),
                    type, op.mpiOp, comm),
                "MPI_Allreduce")
        }
    }

    /// Combines `array` element-wise across all ranks, in place. The
    /// count must be the same on every rank.
    public func allreduce<T: CollectiveScalar>(
        _ array: inout [T], _ op: ReductionOp
    ) throws {
        try array.withUnsafeMutableBufferPointer { try allreduce($0, op) }
    }

    /// Starts combining `buffer` element-wise across all ranks, in place,
    /// without waiting (`MPI_Iallreduce`), so communication can overlap
    /// computation. The buffer must stay valid, and must not be read or
    /// written, until `wait()` on the result returns.
    ///
    /// OpenMPI advances such a reduction only while some MPI call runs
    /// on this rank, so the overlap is best when the work in between is
    /// short or itself calls MPI.
    public func startAllreduce<T: CollectiveScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, _ op: ReductionOp
    ) throws -> PendingReduction {
        let pending = PendingReduction()
        try startAllreduce(buffer, op, into: pending)
        return pending
    }

    /// `startAllreduce(_:_:)` into `pending`, which must not be in flight
    /// (made by `PendingReduction()`, or waited for): one kept from step
    /// to step lets a training loop start reductions without allocating.
    public func startAllreduce<T: CollectiveScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, _ op: ReductionOp,
        into pending: PendingReduction
    ) throws {
        guard pending.isIdle else {
            throw CollectiveError(
                operation: "startAllreduce", code: nil,
                message: "the pending reduction is still in flight; wait "
                    + "for it first")
        }
        let type = try mpiDatatype(T.self, for: "startAllreduce")
        guard let comm = try activeComm("startAllreduce"),
            let base = buffer.baseAddress
        else { return }
        func start(_ offset: Int, _ count: Int) throws {
            var request: MPI_Request?
            let code = MPI_Iallreduce(
                cmpi_in_place(), base + offset, Int32(count), type,
                op.mpiOp, comm, &request)
            if code != MPI_SUCCESS {
                // Pieces already started would go on writing into the
                // buffer after this throws; finish them first.
                try? pending.wait()
                try check(code, "MPI_Iallreduce")
            }
            pending.requests.append(request)
        }
        if buffer.count <= maxChunk {
            // The usual case, without the list of pieces.
            try start(0, buffer.count)
            return
        }
        for piece in chunks(total: buffer.count, limit: maxChunk) {
            try start(piece.offset, piece.count)
        }
    }

    // MARK: Broadcasts

    /// Replaces `buffer` on every rank with the root's contents. The
    /// count must be the same on every rank.
    public func broadcast<T: CollectiveScalar>(
        _ buffer: UnsafeMutableBufferPointer<T>, root: Int
    ) throws {
        let type = try mpiDatatype(T.self, for: "broadcast")
        try checkRoot(root, "broadcast")
        guard let comm = try activeComm("broadcast") else { return }
        try broadcastRaw(
            UnsafeMutableRawPointer(buffer.baseAddress), count: buffer.count,
            stride: MemoryLayout<T>.stride, type: type, root: root,
            comm: comm)
    }

    /// Replaces `array` on every rank with the root's contents. The array
    /// must have the same count on every rank; this is checked first
    /// (one small extra collective), and a mismatch throws on every rank
    /// instead of leaving some ranks waiting.
    public func broadcast<T: CollectiveScalar>(
        _ array: inout [T], root: Int
    ) throws {
        let type = try mpiDatatype(T.self, for: "broadcast")
        try checkRoot(root, "broadcast")
        guard let comm = try activeComm("broadcast") else { return }
        try requireSameCount(array.count, "broadcast", comm)
        try array.withUnsafeMutableBufferPointer { buffer in
            try broadcastRaw(
                UnsafeMutableRawPointer(buffer.baseAddress),
                count: buffer.count, stride: MemoryLayout<T>.stride,
                type: type, root: root, comm: comm)
        }
    }

    /// Variable-length bytes: the root's bytes replace everyone's. The
    /// length goes first, so the other ranks' arrays may start with any
    /// length, for example empty.
    public func broadcast(bytes: inout [UInt8], root: Int) throws {
        try checkRoot(root, "broadcast(bytes:)")
        guard let comm = try activeComm("broadcast(bytes:)") else { return }
        var length = Int64(bytes.count)
        try check(
            MPI_Bcast(&length, 1, cmpi_int64(), Int32(root), comm),
            "MPI_Bcast")
        guard length >= 0 else {
            throw CollectiveError(
                operation: "broadcast(bytes:)", code: nil,
                message: "received a negative length \(length)")
        }
        if rank != root, bytes.count != Int(length) {
            bytes = [UInt8](repeating: 0, count: Int(length))
        }
        try bytes.withUnsafeMutableBytes { raw in
            try broadcastRaw(
                raw.baseAddress, count: raw.count, stride: 1,
                type: cmpi_byte(), root: root, comm: comm)
        }
    }

    private func broadcastRaw(
        _ base: UnsafeMutableRawPointer?, count: Int, stride: Int,
        type: MPI_Datatype, root: Int, comm: MPI_Comm
    ) throws {
        guard let base else { return }
        for piece in chunks(total: count, limit: maxChunk) {
            try check(
                MPI_Bcast(
                    base + piece.offset * stride, Int32(piece.count), type,
                    Int32(root), comm),
                "MPI_Bcast")
        }
    }

    /// Throws on every rank when `count` differs between ranks. All ranks
    /// see the same smallest and largest count, so they agree on failing.
    private func requireSameCount(
        _ count: Int, _ operation: String, _ comm: MPI_Comm
    ) throws {
        // The largest of (count, -count) gives the largest count and
        // minus the smallest in one reduction.
        var bounds: [Int64] = [Int64(count), -Int64(count)]
        try check(
            MPI_Allreduce(
                cmpi_in_place(), &bounds, 2, cmpi_int64(), cmpi_max(), comm),
            "MPI_Allreduce")
        if bounds[0] != -bounds[1] {
            throw CollectiveError(
                operation: operation, code: nil,
                message: "counts differ across ranks: smallest "
                    + "\(-bounds[1]), largest \(bounds[0])")
        }
    }

    // MARK: Barrier and gathers

    /// Returns once every rank has called it.
    public func barrier() throws {
        guard let comm = try activeComm("barrier") else { return }
        try check(MPI_Barrier(comm), "MPI_Barrier")
    }

    /// Every rank contributes `values` (same count on each rank); the
    /// result, the same on every rank, is rank 0's values, then rank 1's,
    /// and so on. Unequal counts throw on every rank.
    public func allgather<T: CollectiveScalar>(_ values: [T]) throws -> [T] {
        try gather(values, requireEqualCounts: true, operation: "allgather")
    }

    /// Like `allgather`, but each rank may contribute a different count,
    /// zero included: the counts are gathered first, then the values
    /// (`MPI_Allgatherv`).
    public func allgatherVariable<T: CollectiveScalar>(
        _ values: [T]
    ) throws -> [T] {
        try gather(
            values, requireEqualCounts: false,
            operation: "allgatherVariable")
    }

    private func gather<T: CollectiveScalar>(
        _ values: [T], requireEqualCounts: Bool, operation: String
    ) throws -> [T] {
        let type = try mpiDatatype(T.self, for: operation)
        guard let comm = try activeComm(operation) else { return values }
        // Everyone learns every count first: that sizes the result, lets
        // all ranks plan the same pieces, and lets allgather refuse
        // unequal counts on all ranks together.
        var mine = Int64(values.count)
        var counts64 = [Int64](repeating: 0, count: size)
        try check(
            MPI_Allgather(
                &mine, 1, cmpi_int64(), &counts64, 1, cmpi_int64(), comm),
            "MPI_Allgather")
        let counts = counts64.map { Int($0) }
        if requireEqualCounts, let low = counts.min(), let high = counts.max(),
            low != high
        {
            throw CollectiveError(
                operation: operation, code: nil,
                message: "counts differ across ranks: smallest \(low), "
                    + "largest \(high); use allgatherVariable")
        }
        var offsets = [Int](repeating: 0, count: size)
        var total = 0
        for index in 0..<size {
            offsets[index] = total
            total += counts[index]
        }
        if total == 0 { return [] }
        return try [T](unsafeUninitializedCapacity: total) {
            result, initialized in
            try values.withUnsafeBufferPointer { send in
                try gatherPieces(
                    send, counts: counts, offsets: offsets, total: total,
                    into: result, type: type, comm: comm)
            }
            initialized = total
        }
    }

    /// Gathers into `result` with every MPI count and displacement at
    /// most `maxChunk`: in one call when the total fits, otherwise in
    /// rounds through a scratch buffer, each round taking the next
    /// `step` values from every rank.
    func gatherPieces<T>(
        _ send: UnsafeBufferPointer<T>, counts: [Int], offsets: [Int],
        total: Int, into result: UnsafeMutableBufferPointer<T>,
        type: MPI_Datatype, comm: MPI_Comm
    ) throws {
        guard let resultBase = result.baseAddress else { return }
        // A rank with nothing to send still passes a real address.
        var spare: Int64 = 0
        try withUnsafeMutableBytes(of: &spare) { spareBytes in
            let spareAddress = UnsafeRawPointer(spareBytes.baseAddress!)
            func sendAddress(_ start: Int, _ count: Int) -> UnsafeRawPointer {
                guard count > 0, let base = send.baseAddress else {
                    return spareAddress
                }
                return UnsafeRawPointer(base + start)
            }
            if total <= maxChunk {
                let counts32 = counts.map { Int32($0) }
                let offsets32 = offsets.map { Int32($0) }
                try check(
                    MPI_Allgatherv(
                        sendAddress(0, send.count), Int32(send.count), type,
                        resultBase, counts32, offsets32, type, comm),
                    "MPI_Allgatherv")
                return
            }
            let step = Swift.max(1, maxChunk / size)
            let scratch = UnsafeMutablePointer<T>.allocate(
                capacity: step * size)
            defer { scratch.deallocate() }
            let longest = counts.max() ?? 0
            var start = 0
            while start < longest {
                let roundCounts = counts.map {
                    Swift.min(Swift.max($0 - start, 0), step)
                }
                var roundOffsets = [Int](repeating: 0, count: size)
                for index in 1..<size {
                    roundOffsets[index] =
                        roundOffsets[index - 1] + roundCounts[index - 1]
                }
                let own = roundCounts[rank]
                try check(
                    MPI_Allgatherv(
                        sendAddress(start, own), Int32(own), type, scratch,
                        roundCounts.map { Int32($0) },
                        roundOffsets.map { Int32($0) }, type, comm),
                    "MPI_Allgatherv")
                for index in 0..<size where roundCounts[index] > 0 {
                    (resultBase + offsets[index] + start).initialize(
                        from: scratch + roundOffsets[index],
                        count: roundCounts[index])
                }
                start += step
            }
        }
    }

    // MARK: Ending

    /// Ends the whole job now: `MPI_Abort` on the world whenever MPI is
    /// in use (a forced singleton included), `exit(code)` otherwise.
    /// Buffered standard output is flushed first, since `MPI_Abort` kills
    /// without flushing. Never returns.
    public func abort(code: Int32) -> Never {
        fflush(nil)
        if let comm {
            var done: Int32 = 0
            if MPI_Finalized(&done) == MPI_SUCCESS, done == 0 {
                _ = MPI_Abort(comm, code)
            }
        }
        exit(code)
    }
}

/// A reduction started by `Communicator.startAllreduce`, finished by
/// `wait()`.
///
/// Dropping one without waiting waits in `deinit` (ignoring errors),
/// because MPI would otherwise keep writing into a buffer the caller
/// believes is free.
public final class PendingReduction {
    fileprivate var requests: [MPI_Request?] = []

    /// One with nothing in flight, for `startAllreduce(_:_:into:)`.
    public init() {}

    /// Whether nothing is in flight.
    public var isIdle: Bool { requests.isEmpty }

    /// Blocks until the reduction is complete on this rank; the buffer
    /// then holds the reduced values. Later calls return at once.
    public func wait() throws {
        guard !requests.isEmpty else { return }
        var done: Int32 = 0
        try check(MPI_Finalized(&done), "MPI_Finalized")
        if done != 0 {
            requests = []
            throw CollectiveError(
                operation: "wait", code: nil,
                message: "MPI was finalised before the reduction finished")
        }
        let code = requests.withUnsafeMutableBufferPointer {
            MPI_Waitall(
                Int32($0.count), $0.baseAddress, cmpi_statuses_ignore())
        }
        // Emptied but kept, so that the next start allocates nothing.
        requests.removeAll(keepingCapacity: true)
        try check(code, "MPI_Waitall")
    }

    deinit {
        try? wait()
    }
}
