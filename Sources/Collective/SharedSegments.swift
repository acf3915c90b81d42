import CMPI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Memory that every rank maps, when all ranks run on one machine: each
/// rank has a segment of `capacity` bytes that only it writes, and that
/// every rank may read after `synchronize()` (an MPI-3 shared window).
/// The caller lays its values out in the segments (`view`).
///
/// A message between two processes on one machine is copied at least
/// once on its way, into the receiver's buffer; with shared segments a
/// rank reads what another wrote where it lies, so an exchange of large
/// blocks costs one barrier instead of a copy.
///
/// Writes and reads alternate in phases separated by `synchronize()`, a
/// collective: a rank writes only its own segment, then synchronises,
/// then reads any segment, and must not write its own again until every
/// rank is known to be done reading (some later collective that every
/// rank enters after its reads, such as the next `synchronize()`).
/// Counters in the segments (`counter(_:at:)`) allow finer hand-offs
/// between two such points, without a collective.
///
/// `make` returns nil in a world of one, when the ranks span several
/// machines, or when `HEADLINE_SHARED_MEMORY=0` is set on any rank; the
/// caller then exchanges messages instead. Every method here is a
/// collective except `view` and `counter`.
public final class SharedSegments: @unchecked Sendable {
    /// Bytes per rank's segment.
    public private(set) var capacity: Int
    private let world: Communicator
    /// The ranks on this machine: all of them; nil once freed.
    private var node: MPI_Comm?
    private var window: MPI_Win
    /// Each rank's segment, in rank order.
    private(set) var bases: [UnsafeMutableRawPointer]

    private init(world: Communicator, node: MPI_Comm) {
        self.world = world
        self.node = node
        capacity = 0
        window = cmpi_win_null()
        bases = []
    }

    /// Segments of `capacity` bytes for every rank, or nil where they
    /// cannot be had (see the type's notes). A collective; every rank
    /// gets the same answer.
    public static func make(_ world: Communicator, capacity: Int) throws
        -> SharedSegments?
    {
        try make(world, capacities: [capacity])?.first
    }

    /// One set of segments per entry of `capacities` (bytes per rank), or
    /// nil, for all of them, where they cannot be had: see the type's
    /// notes, and where the machine's shared-memory file system
    /// (`/dev/shm`, where OpenMPI keeps them) has less room free than they
    /// could fill, all ranks' segments together (its pages are taken as
    /// they are first written, and a write that finds it full kills the
    /// process, as a container's small default `/dev/shm` would). A
    /// collective; every rank gets the same answer.
    public static func make(_ world: Communicator, capacities: [Int]) throws
        -> [SharedSegments]?
    {
        guard let comm = try world.activeComm("SharedSegments.make"),
            world.size > 1
        else { return nil }
        var node: MPI_Comm? = nil
        try check(
            MPI_Comm_split_type(
                comm, Int32(cmpi_comm_type_shared()), Int32(world.rank),
                cmpi_info_null(), &node),
            "MPI_Comm_split_type")
        guard let node else {
            throw CollectiveError(
                operation: "MPI_Comm_split_type", code: nil,
                message: "MPI returned no communicator")
        }
        var nodeSize: Int32 = 0
        try check(MPI_Comm_size(node, &nodeSize), "MPI_Comm_size")
        // Every rank must take the same branch, so the answer is agreed.
        let needed = capacities.reduce(0) { $0 + pageRounded($1) } * world.size
        var allowed: Int32 =
            environmentValue("HEADLINE_SHARED_MEMORY") != "0"
                && Int(nodeSize) == world.size
                && sharedMemoryRoom().map { $0 >= needed } ?? true
            ? 1 : 0
        try check(
            MPI_Allreduce(
                cmpi_in_place(), &allowed, 1, cmpi_int32(), cmpi_min(),
                comm),
            "MPI_Allreduce")
        guard allowed == 1 else {
            var spare: MPI_Comm? = node
            try check(MPI_Comm_free(&spare), "MPI_Comm_free")
            return nil
        }
        try check(
            MPI_Comm_set_errhandler(node, cmpi_errors_return()),
            "MPI_Comm_set_errhandler")
        var made: [SharedSegments] = []
        for (index, capacity) in capacities.enumerated() {
            // Each set frees its own communicator.
            var own: MPI_Comm? = node
            if index > 0 {
                try check(MPI_Comm_dup(node, &own), "MPI_Comm_dup")
            }
            let segments = SharedSegments(world: world, node: own!)
            try segments.reserve(capacity)
            made.append(segments)
        }
        return made
    }

    /// `count` values of type `T` at byte `offset` of rank `rank`'s
    /// segment. This rank may write its own; another rank's may be read
    /// only between a `synchronize()` and that rank's next write. A
    /// region must be viewed as one type only, and `offset` must suit
    /// its alignment.
    public func view<T: BitwiseCopyable>(
        _ rank: Int, as type: T.Type, at offset: Int = 0, count: Int
    ) -> UnsafeMutableBufferPointer<T> {
        precondition(
            offset >= 0 && count >= 0
                && offset + count * MemoryLayout<T>.stride <= capacity,
            "the view lies outside the segment")
        precondition(
            offset % MemoryLayout<T>.alignment == 0, "misaligned view")
        return UnsafeMutableBufferPointer(
            start: (bases[rank] + offset).bindMemory(
                to: T.self, capacity: count),
            count: count)
    }

    /// Makes every segment hold at least `count` bytes, keeping none of
    /// them: a collective, with the same `count` on every rank. The
    /// segments are replaced only when they are too small, and then with
    /// twice the room, so that growing stops early; pages no rank writes
    /// cost address space, not memory.
    public func reserve(_ count: Int) throws {
        guard count > capacity || bases.isEmpty else { return }
        guard let node else {
            throw CollectiveError(
                operation: "SharedSegments.reserve", code: nil,
                message: "the segments have been freed")
        }
        // Whole pages, so that every segment starts page-aligned (for any
        // value type) when MPI lays them end to end.
        let room = pageRounded(Swift.max(count, 2 * capacity, 1))
        try release()
        var base: UnsafeMutableRawPointer? = nil
        var created: MPI_Win? = nil
        try check(
            MPI_Win_allocate_shared(
                MPI_Aint(room), 1, cmpi_info_null(), node, &base, &created),
            "MPI_Win_allocate_shared")
        guard let created else {
            throw CollectiveError(
                operation: "MPI_Win_allocate_shared", code: nil,
                message: "MPI returned no window")
        }
        window = created
        try check(
            MPI_Win_set_errhandler(window, cmpi_errors_return()),
            "MPI_Win_set_errhandler")
        // One passive epoch for the window's whole life: loads and stores
        // go straight to memory, ordered by `synchronize()`.
        try check(
            MPI_Win_lock_all(Int32(cmpi_mode_nocheck()), window),
            "MPI_Win_lock_all")
        var found: [UnsafeMutableRawPointer] = []
        found.reserveCapacity(world.size)
        for rank in 0..<world.size {
            var size: MPI_Aint = 0
            var unit: Int32 = 0
            var start: UnsafeMutableRawPointer? = nil
            try check(
                MPI_Win_shared_query(
                    window, Int32(rank), &size, &unit, &start),
                "MPI_Win_shared_query")
            guard let start, Int(size) >= room else {
                throw CollectiveError(
                    operation: "MPI_Win_shared_query", code: nil,
                    message: "rank \(rank)'s segment is \(size) bytes, "
                        + "expected \(room)")
            }
            found.append(start)
        }
        bases = found
        capacity = room
    }

    /// Ends a phase: every rank's writes before this call are visible to
    /// every rank's reads after it. A collective.
    public func synchronize() throws {
        try check(MPI_Win_sync(window), "MPI_Win_sync")
        try check(MPI_Barrier(node ?? cmpi_comm_self()), "MPI_Barrier")
        try check(MPI_Win_sync(window), "MPI_Win_sync")
    }

    /// Frees the memory (a collective). The object must not be used
    /// afterwards except to be dropped; dropping it without this leaves
    /// the memory to MPI's finalisation, since a free in `deinit` could
    /// not be matched across ranks.
    public func free() throws {
        try release()
        if node != nil {
            try check(MPI_Comm_free(&node), "MPI_Comm_free")
            node = nil
        }
    }

    private func release() throws {
        guard window != cmpi_win_null() else { return }
        bases = []
        capacity = 0
        try check(MPI_Win_unlock_all(window), "MPI_Win_unlock_all")
        var freed: MPI_Win? = window
        window = cmpi_win_null()
        try check(MPI_Win_free(&freed), "MPI_Win_free")
    }
}

/// `bytes` rounded up to whole 4 KiB pages.
private func pageRounded(_ bytes: Int) -> Int { (bytes + 4095) / 4096 * 4096 }

/// The bytes free in `/dev/shm`, or nil where there is none to ask.
private func sharedMemoryRoom() -> Int? {
    var info = statvfs()
    guard statvfs("/dev/shm", &info) == 0 else { return nil }
    return Int(info.f_bavail) * Int(info.f_frsize)
}
