import CMPI

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

// MARK: - Public value types

/// How a reduction combines the values that the ranks contribute, element
/// by element.
public enum ReductionOp: Sendable {
    /// The sum of the ranks' values.
    case sum
    /// The largest of the ranks' values.
    case max
    /// The smallest of the ranks' values.
    case min
}

/// A scalar type that the collectives in this module can move and reduce.
///
/// `Float`, `Double`, `Int32` and `Int64` conform. Each maps to a
/// fixed-width MPI datatype inside this module. Another type can be made
/// to conform, since Swift offers no way to forbid it, but every
/// collective on it throws a `CollectiveError`, because MPI would have no
/// description of its bytes.
public protocol CollectiveScalar {}

extension Float: CollectiveScalar {}
extension Double: CollectiveScalar {}
extension Int32: CollectiveScalar {}
extension Int64: CollectiveScalar {}

/// A collective operation that failed, either inside MPI or because its
/// arguments were refused before MPI was called.
public struct CollectiveError: Error, CustomStringConvertible {
    /// The operation that failed: the MPI function (for example
    /// `"MPI_Allreduce"`) or, for a refused argument, the method name.
    public let operation: String
    /// The code MPI returned, or nil when the error was found before
    /// any MPI call.
    public let code: Int32?
    /// MPI's own text for `code` (from `MPI_Error_string`), or this
    /// module's explanation when `code` is nil.
    public let message: String

    /// Makes an error; `code` is nil for a problem found before MPI.
    public init(operation: String, code: Int32?, message: String) {
        self.operation = operation
        self.code = code
        self.message = message
    }

    /// One line: operation, MPI error code when there is one, and message.
    public var description: String {
        if let code {
            return "\(operation) failed with MPI error \(code): \(message)"
        }
        return "\(operation): \(message)"
    }
}

// MARK: - Mapping to MPI

extension ReductionOp {
    var mpiOp: MPI_Op {
        switch self {
        case .sum: return cmpi_sum()
        case .max: return cmpi_max()
        case .min: return cmpi_min()
        }
    }
}

/// The MPI datatype for `type`, or an error naming the type when it is
/// not one of the four supported scalars.
///
/// The protocol cannot carry this as a requirement without putting MPI
/// types in the public API, so the mapping is a check on the metatype;
/// in specialised code the comparisons fold to a constant.
func mpiDatatype<T: CollectiveScalar>(
    _ type: T.Type, for operation: String
) throws -> MPI_Datatype {
    if type == Float.self { return cmpi_float() }
    if type == Double.self { return cmpi_double() }
    if type == Int32.self { return cmpi_int32() }
    if type == Int64.self { return cmpi_int64() }
    throw CollectiveError(
        operation: operation, code: nil,
        message: "unsupported scalar type \(type); only Float, Double, "
            + "Int32 and Int64 can be sent")
}

/// MPI's text for an error code, falling back to the bare number when
/// MPI cannot describe it.
func mpiErrorString(_ code: Int32) -> String {
    var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    guard MPI_Error_string(code, &text, &length) == MPI_SUCCESS else {
        return "unknown MPI error code \(code)"
    }
    let bytes = text.prefix(Int(length)).map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Turns a non-success MPI return code into a `CollectiveError`.
@inline(__always)
func check(_ code: Int32, _ operation: String) throws {
    if code != MPI_SUCCESS {
        throw CollectiveError(
            operation: operation, code: code,
            message: mpiErrorString(code))
    }
}

// MARK: - Counts

/// The pieces `(offset, count)` that cover `0..<total` with no piece
/// longer than `limit`.
///
/// MPI counts are C `int`, so a buffer longer than `Int32.max` elements
/// has to go in several calls; every rank computes the same pieces from
/// the same total, which keeps the calls matched across ranks.
func chunks(total: Int, limit: Int) -> [(offset: Int, count: Int)] {
    precondition(total >= 0 && limit > 0)
    var pieces: [(offset: Int, count: Int)] = []
    pieces.reserveCapacity(total / limit + 1)
    var offset = 0
    while offset < total {
        let count = Swift.min(limit, total - offset)
        pieces.append((offset, count))
        offset += count
    }
    return pieces
}

/// The largest element count passed to one MPI call.
///
/// `Int32.max` unless `HEADLINE_COLLECTIVE_MAX_CHUNK` asks for less, so
/// the multi-piece paths can be tested with small buffers instead of
/// buffers of 8 GiB and more; values outside `1...Int32.max` are ignored.
func chunkLimit(_ lookup: (String) -> String?) -> Int {
    let largest = Int(Int32.max)
    guard let text = lookup("HEADLINE_COLLECTIVE_MAX_CHUNK"),
        let value = Int(text), value >= 1, value <= largest
    else { return largest }
    return value
}

// MARK: - Environment

/// Reads one environment variable.
func environmentValue(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}

/// Whether the environment says an MPI launcher started this process.
///
/// The decision is made from the environment, before any MPI call,
/// because `MPI_Init` in a plain process makes OpenMPI start a singleton
/// runtime (it forks a helper daemon), which costs time and can fail on a
/// machine where MPI's runtime is not set up; a trainer run by hand should
/// not depend on that. Every launcher this project meets exports the
/// rank or size to each process before it starts: OpenMPI's mpirun sets
/// `OMPI_COMM_WORLD_SIZE`, PMIx launchers set `PMIX_RANK`, Hydra (MPICH,
/// Intel MPI) sets `PMI_RANK` and `PMI_SIZE`, and Slurm's srun sets
/// `SLURM_PROCID` per task. Slurm also sets `SLURM_NTASKS` for a whole
/// allocation, so only a step of more than one task counts as launched.
func startedByMPILauncher(_ lookup: (String) -> String?) -> Bool {
    for name in ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
    where lookup(name) != nil {
        return true
    }
    if let tasks = lookup("SLURM_NTASKS").flatMap({ Int($0) }), tasks > 1,
        lookup("SLURM_PROCID") != nil
    {
        return true
    }
    return false
}

/// Whether `HEADLINE_FORCE_MPI=1` asks for MPI even without a launcher,
/// which gives a singleton MPI world of one process.
func mpiForced(_ lookup: (String) -> String?) -> Bool {
    lookup("HEADLINE_FORCE_MPI") == "1"
}

// MARK: - Lock

/// A plain mutex. Foundation would be a large import for one lock, and
/// the standard library's `Mutex` needs macOS 15 where this also builds.
final class Lock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}
