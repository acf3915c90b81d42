// Exercises every collective for every scalar type with data that depends
// on the rank, and checks the exact result on every rank. Meant to run
// under mpirun with several ranks (CollectiveTests does that), but works
// in a plain process too, as a world of one.
//
// Output: one line per check, "rank R/N ok NAME" or "rank R/N FAIL NAME:
// why", then "rank R/N done: C checks, F failed". Exit status 1 when any
// check failed.
//
// Arguments:
//   --large N      element count of the large Float all-reduce (4000000)
//   --mpi-error    instead of the checks, provoke one real MPI error (a
//                  broadcast into a buffer too short for it) and check
//                  that it arrives as a CollectiveError with MPI's text
//   --expect-mpi yes|no
//                  whether MPI should be in use; then, after the checks,
//                  finalise twice and check that a collective throws
//                  (MPI) or still works as a no-op (world of one)
//   --abort CODE   call abort(code: CODE) on rank 0 after joining

import Collective

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Whole lines, so mpirun does not interleave two ranks inside a line.
setvbuf(stdout, nil, _IOLBF, 0)

/// The four scalar types, built from small integers so that every
/// expected sum is exact in floating point too.
protocol CheckScalar: CollectiveScalar, Equatable {
    init(checkValue: Int)
}
extension Float: CheckScalar {
    init(checkValue: Int) { self.init(checkValue) }
}
extension Double: CheckScalar {
    init(checkValue: Int) { self.init(checkValue) }
}
extension Int32: CheckScalar {
    init(checkValue: Int) { self.init(checkValue) }
}
extension Int64: CheckScalar {
    init(checkValue: Int) { self.init(checkValue) }
}

/// A type that conforms but has no MPI datatype, to see it refused.
struct Unsupported: CollectiveScalar {
    var value: Int16
}

var largeCount = 4_000_000
var provokeMPIError = false
var expectMPI: Bool?
var abortCode: Int32?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--large":
        guard let text = arguments.next(), let value = Int(text), value >= 0
        else {
            print("--large needs a count")
            exit(2)
        }
        largeCount = value
    case "--mpi-error":
        provokeMPIError = true
    case "--expect-mpi":
        switch arguments.next() {
        case "yes": expectMPI = true
        case "no": expectMPI = false
        default:
            print("--expect-mpi needs yes or no")
            exit(2)
        }
    case "--abort":
        guard let text = arguments.next(), let value = Int32(text) else {
            print("--abort needs an exit code")
            exit(2)
        }
        abortCode = value
    default:
        print("unknown argument \(argument)")
        exit(2)
    }
}

let started = ContinuousClock.now
let world: Communicator
do {
    world = try Communicator.world()
} catch {
    print("world() failed: \(error)")
    exit(1)
}
let initTime = ContinuousClock.now - started
let rank = world.rank
let size = world.size
let prefix = "rank \(rank)/\(size)"
let initMilliseconds =
    Double(initTime.components.seconds) * 1000
    + Double(initTime.components.attoseconds) / 1e15
print(
    "\(prefix) world distributed=\(world.isDistributed) "
        + "init_ms=\(Int(initMilliseconds.rounded()))")

var checkCount = 0
var failureCount = 0

/// Runs one check: `body` returns nil when the result is right, or what
/// was wrong. A thrown error is a failure too.
func run(_ name: String, _ body: () throws -> String?) {
    checkCount += 1
    let problem: String?
    do {
        problem = try body()
    } catch {
        problem = "threw \(error)"
    }
    if let problem {
        failureCount += 1
        print("\(prefix) FAIL \(name): \(problem)")
    } else {
        print("\(prefix) ok \(name)")
    }
}

/// nil when the arrays match, else the first difference.
func compare<T: Equatable>(_ got: [T], _ expected: [T]) -> String? {
    if got.count != expected.count {
        return "count \(got.count), expected \(expected.count)"
    }
    for index in got.indices where got[index] != expected[index] {
        return "element \(index) is \(got[index]), "
            + "expected \(expected[index])"
    }
    return nil
}

/// Checks that `body` throws a CollectiveError found before MPI (no
/// code) whose message contains `text`.
func expectRefusal(_ text: String, _ body: () throws -> Void) -> String? {
    do {
        try body()
        return "did not throw"
    } catch let error as CollectiveError {
        if error.code != nil {
            return "expected a refusal before MPI, got \(error)"
        }
        if !error.description.contains(text) {
            return "message lacks \"\(text)\": \(error)"
        }
        return nil
    } catch {
        return "threw \(error), not a CollectiveError"
    }
}

/// The number of elements rank `r` contributes to allgatherVariable:
/// rank 1 none, the others more than a small piece limit.
func variableCount(_ r: Int) -> Int { r == 1 ? 0 : 5 + 4 * r }

/// alltoallVariable where rank `from` sends `count(from, to)` values to
/// rank `to`, valued 1000 from + 10 to + index, so each receiver can tell
/// where every value came from. nil when all arrived in place.
func checkAlltoall<T: CheckScalar>(
    _: T.Type, _ count: (Int, Int) -> Int
) throws -> String? {
    let n = size
    let sendCounts = (0..<n).map { Int32(count(rank, $0)) }
    let receiveCounts = (0..<n).map { Int32(count($0, rank)) }
    var send: [T] = []
    var expected: [T] = []
    for k in 0..<n {
        for j in 0..<count(rank, k) {
            send.append(T(checkValue: 1000 * rank + 10 * k + j))
        }
        for j in 0..<count(k, rank) {
            expected.append(T(checkValue: 1000 * k + 10 * rank + j))
        }
    }
    var got = [T](repeating: T(checkValue: -1), count: expected.count)
    try send.withUnsafeBufferPointer { send in
        try sendCounts.withUnsafeBufferPointer { sendCounts in
            try got.withUnsafeMutableBufferPointer { got in
                try receiveCounts.withUnsafeBufferPointer {
                    try world.alltoallVariable(
                        send, sendCounts: sendCounts, into: got,
                        receiveCounts: $0)
                }
            }
        }
    }
    return compare(got, expected)
}

func checkType<T: CheckScalar>(_: T.Type) {
    let name = "\(T.self)"
    let n = size
    let length = 20

    run("allreduce-sum-array \(name)") {
        var data = (0..<length).map { T(checkValue: (rank + 1) * ($0 + 1)) }
        try world.allreduce(&data, .sum)
        let expected = (0..<length).map {
            T(checkValue: ($0 + 1) * n * (n + 1) / 2)
        }
        return compare(data, expected)
    }
    run("allreduce-max-array \(name)") {
        var data = (0..<length).map { T(checkValue: rank - $0) }
        try world.allreduce(&data, .max)
        return compare(data, (0..<length).map { T(checkValue: n - 1 - $0) })
    }
    run("allreduce-min-array \(name)") {
        var data = (0..<length).map { T(checkValue: rank - $0) }
        try world.allreduce(&data, .min)
        return compare(data, (0..<length).map { T(checkValue: -$0) })
    }
    run("allreduce-sum-buffer \(name)") {
        var data = (0..<length).map { T(checkValue: rank * $0) }
        try data.withUnsafeMutableBufferPointer {
            try world.allreduce($0, .sum)
        }
        return compare(
            data, (0..<length).map { T(checkValue: $0 * n * (n - 1) / 2) })
    }
    run("broadcast-array \(name)") {
        let root = n - 1
        let fromRoot = (0..<length).map { T(checkValue: root * 100 + $0) }
        var data =
            rank == root
            ? fromRoot : [T](repeating: T(checkValue: -1), count: length)
        try world.broadcast(&data, root: root)
        return compare(data, fromRoot)
    }
    run("broadcast-buffer \(name)") {
        let root = 1 % n
        let fromRoot = (0..<length).map { T(checkValue: root * 100 - $0) }
        var data =
            rank == root
            ? fromRoot : [T](repeating: T(checkValue: 7), count: length)
        try data.withUnsafeMutableBufferPointer {
            try world.broadcast($0, root: root)
        }
        return compare(data, fromRoot)
    }
    run("allgather \(name)") {
        let mine = (0..<3).map { T(checkValue: rank * 10 + $0) }
        let got = try world.allgather(mine)
        let expected = (0..<n).flatMap { r in
            (0..<3).map { T(checkValue: r * 10 + $0) }
        }
        return compare(got, expected)
    }
    run("allgatherVariable \(name)") {
        let mine = (0..<variableCount(rank)).map {
            T(checkValue: rank * 100 + $0)
        }
        let got = try world.allgatherVariable(mine)
        let expected = (0..<n).flatMap { r in
            (0..<variableCount(r)).map { T(checkValue: r * 100 + $0) }
        }
        return compare(got, expected)
    }
    run("allgatherVariable-rank0-empty \(name)") {
        let mine = (0..<rank).map { T(checkValue: rank - $0) }
        let got = try world.allgatherVariable(mine)
        let expected = (0..<n).flatMap { r in
            (0..<r).map { T(checkValue: r - $0) }
        }
        return compare(got, expected)
    }
    // The buffer forms, with few enough values to fit a piece limit of
    // 7 on 3 ranks (they refuse rather than split; see below).
    run("allgather-into \(name)") {
        let mine = [T(checkValue: rank * 10), T(checkValue: rank * 10 + 1)]
        var got = [T](repeating: T(checkValue: -1), count: 2 * n + 1)
        try mine.withUnsafeBufferPointer { send in
            try got.withUnsafeMutableBufferPointer {
                try world.allgather(send, into: $0)
            }
        }
        let expected = (0..<n).flatMap { r in
            [T(checkValue: r * 10), T(checkValue: r * 10 + 1)]
        }
        // The spare last slot is left alone.
        return compare(got, expected + [T(checkValue: -1)])
    }
    run("allgatherVariable-into \(name)") {
        // Rank r sends r % 3 values (rank 0 none).
        let counts = (0..<n).map { Int32($0 % 3) }
        let mine = (0..<(rank % 3)).map { T(checkValue: rank * 100 + $0) }
        let total = counts.reduce(0) { $0 + Int($1) }
        var got = [T](repeating: T(checkValue: -1), count: total)
        try mine.withUnsafeBufferPointer { send in
            try counts.withUnsafeBufferPointer { counts in
                try got.withUnsafeMutableBufferPointer {
                    try world.allgatherVariable(
                        send, counts: counts, into: $0)
                }
            }
        }
        let expected = (0..<n).flatMap { r in
            (0..<(r % 3)).map { T(checkValue: r * 100 + $0) }
        }
        return compare(got, expected)
    }
    run("allgatherVariableInPlace \(name)") {
        // Rank r holds (r + 1) % 3 values, at its place in the buffer.
        let counts = (0..<n).map { Int32(($0 + 1) % 3) }
        let start = counts[0..<rank].reduce(0) { $0 + Int($1) }
        let total = counts.reduce(0) { $0 + Int($1) }
        var buffer = [T](repeating: T(checkValue: -1), count: total + 1)
        for j in 0..<Int(counts[rank]) {
            buffer[start + j] = T(checkValue: rank * 100 + j)
        }
        try counts.withUnsafeBufferPointer { counts in
            try buffer.withUnsafeMutableBufferPointer {
                try world.allgatherVariableInPlace($0, counts: counts)
            }
        }
        let expected = (0..<n).flatMap { r in
            (0..<((r + 1) % 3)).map { T(checkValue: r * 100 + $0) }
        }
        return compare(buffer, expected + [T(checkValue: -1)])
    }
    run("alltoallVariable \(name)") {
        // Rank r sends (r + k) % 2 values to rank k.
        try checkAlltoall(T.self) { from, to in (from + to) % 2 }
    }
    // Larger than the piece limit of 7 (testThreeRanksInSmallPieces), so
    // there the buffer forms go in rounds.
    run("alltoallVariable-large \(name)") {
        try checkAlltoall(T.self) { from, to in 3 + 2 * ((from + to) % 5) }
    }
    run("allgatherVariable-large \(name)") {
        let counts = (0..<n).map { Int32(4 + 3 * $0) }
        let start = counts[0..<rank].reduce(0) { $0 + Int($1) }
        let total = counts.reduce(0) { $0 + Int($1) }
        let mine = (0..<Int(counts[rank])).map {
            T(checkValue: rank * 100 + $0)
        }
        let expected = (0..<n).flatMap { r in
            (0..<(4 + 3 * r)).map { T(checkValue: r * 100 + $0) }
        }
        var into = [T](repeating: T(checkValue: -1), count: total)
        var inPlace = into
        for (j, value) in mine.enumerated() { inPlace[start + j] = value }
        try mine.withUnsafeBufferPointer { send in
            try counts.withUnsafeBufferPointer { counts in
                try into.withUnsafeMutableBufferPointer {
                    try world.allgatherVariable(
                        send, counts: counts, into: $0)
                }
                try inPlace.withUnsafeMutableBufferPointer {
                    try world.allgatherVariableInPlace($0, counts: counts)
                }
            }
        }
        var both = [T](repeating: T(checkValue: -1), count: 5 * n)
        let five = (0..<5).map { T(checkValue: rank * 10 + $0) }
        try five.withUnsafeBufferPointer { send in
            try both.withUnsafeMutableBufferPointer {
                try world.allgather(send, into: $0)
            }
        }
        let fives = (0..<n).flatMap { r in
            (0..<5).map { T(checkValue: r * 10 + $0) }
        }
        return compare(into, expected) ?? compare(inPlace, expected)
            ?? compare(both, fives)
    }
    run("startAllreduce-sum \(name)") {
        var data = (0..<1000).map { T(checkValue: rank + 1 + $0) }
        var busy = 0
        try data.withUnsafeMutableBufferPointer { buffer in
            let pending = try world.startAllreduce(buffer, .sum)
            // Work that does not touch the buffer while it is in flight.
            for step in 0..<10_000 { busy = busy &+ step * rank }
            try pending.wait()
            try pending.wait()  // a second wait returns at once
        }
        let expected = (0..<1000).map {
            T(checkValue: n * $0 + n * (n + 1) / 2)
        }
        return compare(data, expected) ?? (busy < 0 ? "impossible" : nil)
    }
    run("startAllreduce-max \(name)") {
        var data = (0..<100).map { T(checkValue: $0 * (rank + 1)) }
        try data.withUnsafeMutableBufferPointer { buffer in
            try world.startAllreduce(buffer, .max).wait()
        }
        return compare(data, (0..<100).map { T(checkValue: $0 * n) })
    }
}

func runChecks() {
    checkType(Float.self)
    checkType(Double.self)
    checkType(Int32.self)
    checkType(Int64.self)

    run("broadcast-bytes") {
        let root = size - 1
        let text = "bytes from rank \(root) " + String(repeating: "x", count: 9)
        var bytes =
            rank == root
            ? Array(text.utf8) : [UInt8](repeating: 1, count: rank * 3)
        try world.broadcast(bytes: &bytes, root: root)
        return compare(bytes, Array(text.utf8))
    }
    run("broadcast-bytes-empty") {
        var bytes = rank == 0 ? [] : [UInt8](repeating: 9, count: 4)
        try world.broadcast(bytes: &bytes, root: 0)
        return compare(bytes, [])
    }
    run("barrier") {
        try world.barrier()
        return nil
    }
    run("shared-segments") { try checkSharedSegments() }
    run("large-allreduce-sum Float x\(largeCount)") {
        let n = size
        var data = (0..<largeCount).map { Float(($0 % 1024) + rank) }
        try world.allreduce(&data, .sum)
        let offset = n * (n - 1) / 2
        for index in data.indices
        where data[index] != Float(n * (index % 1024) + offset) {
            return "element \(index) is \(data[index]), expected "
                + "\(n * (index % 1024) + offset)"
        }
        return nil
    }
    run("refuse-root-too-large") {
        var data: [Float] = [1, 2]
        return expectRefusal("root \(size) is outside") {
            try world.broadcast(&data, root: size)
        }
    }
    run("refuse-root-negative") {
        var bytes: [UInt8] = [1]
        return expectRefusal("root -1 is outside") {
            try world.broadcast(bytes: &bytes, root: -1)
        }
    }
    run("refuse-unsupported-type") {
        var data = [Unsupported(value: 1)]
        return expectRefusal("unsupported scalar type") {
            try world.allreduce(&data, .sum)
        }
    }
    run("refuse-counts-not-one-per-rank") {
        let counts = [Int32](repeating: 0, count: size + 1)
        var out = [Float](repeating: 0, count: 1)
        return expectRefusal("counts for \(size) ranks") {
            try counts.withUnsafeBufferPointer { counts in
                try out.withUnsafeMutableBufferPointer {
                    try world.allgatherVariable(
                        UnsafeBufferPointer(start: nil, count: 0),
                        counts: counts, into: $0)
                }
            }
        }
    }
    run("refuse-own-count-mismatch") {
        // Every rank claims one value more than it sends.
        let counts = [Int32](repeating: 2, count: size)
        let mine: [Float] = [1]
        var out = [Float](repeating: 0, count: 2 * size)
        return expectRefusal("the counts say 2") {
            try mine.withUnsafeBufferPointer { send in
                try counts.withUnsafeBufferPointer { counts in
                    try out.withUnsafeMutableBufferPointer {
                        try world.allgatherVariable(
                            send, counts: counts, into: $0)
                    }
                }
            }
        }
    }
    run("refuse-result-too-small") {
        let mine: [Double] = [1, 2]
        var out = [Double](repeating: 0, count: 2 * size - 1)
        return expectRefusal("needed") {
            try mine.withUnsafeBufferPointer { send in
                try out.withUnsafeMutableBufferPointer {
                    try world.allgather(send, into: $0)
                }
            }
        }
    }
    if size > 1 {
        // Unequal counts are caught by a collective check, so every
        // rank must throw, not only the odd one.
        run("refuse-allgather-unequal-counts") {
            expectRefusal("counts differ") {
                _ = try world.allgather([Int32](repeating: 1, count: rank))
            }
        }
        run("refuse-broadcast-unequal-counts") {
            var data = [Double](repeating: 0, count: rank + 1)
            return expectRefusal("counts differ") {
                try world.broadcast(&data, root: 0)
            }
        }
    }
    run("barrier-after-refusals") {
        try world.barrier()
        return nil
    }
}

/// Shared segments: absent in a world of one and when
/// HEADLINE_SHARED_MEMORY=0; otherwise each rank writes rank-dependent
/// values of two types into its own segment and, after synchronize(),
/// finds every rank's; again after the segments grew, and once more after
/// a second round of writes (no rank reads stale values).
func checkSharedSegments() throws -> String? {
    let disabled =
        getenv("HEADLINE_SHARED_MEMORY").map { String(cString: $0) } == "0"
    guard let segments = try SharedSegments.make(world, capacity: 100) else {
        return size == 1 || disabled ? nil : "no shared segments on one machine"
    }
    if size == 1 || disabled {
        return "shared segments where none were expected"
    }
    for (round, count) in [(0, 10), (1, 5000), (2, 5000)] {
        try segments.reserve(count * 12 + 64)
        let at = (count * 4 + 7) / 8 * 8
        let ints = segments.view(rank, as: Int32.self, count: count)
        let doubles = segments.view(rank, as: Double.self, at: at, count: count)
        for j in 0..<count {
            ints[j] = Int32(rank * 1_000_000 + round * 100_000 + j)
            doubles[j] = Double(rank) + Double(j) / 8 + Double(round)
        }
        try segments.synchronize()
        for k in 0..<size {
            let ints = segments.view(k, as: Int32.self, count: count)
            let doubles = segments.view(
                k, as: Double.self, at: at, count: count)
            for j in 0..<count {
                if ints[j] != Int32(k * 1_000_000 + round * 100_000 + j)
                    || doubles[j] != Double(k) + Double(j) / 8 + Double(round)
                {
                    return "round \(round): rank \(k)'s value \(j) is "
                        + "\(ints[j]) / \(doubles[j])"
                }
            }
        }
        // Nobody writes the next round before everyone has read.
        try segments.synchronize()
    }
    if segments.capacity < 5000 * 12 { return "the segments did not grow" }
    try segments.free()
    return nil
}

/// Rank 0 broadcasts 64 values; the others offer room for 8. MPI reports
/// the truncation on the receivers; the root's send completes.
func runMPIError() {
    run("mpi-error-truncated-broadcast") {
        guard size > 1 else { return "needs at least two ranks" }
        var data = [Int32](repeating: 5, count: rank == 0 ? 64 : 8)
        do {
            try data.withUnsafeMutableBufferPointer {
                try world.broadcast($0, root: 0)
            }
        } catch let error as CollectiveError {
            print("\(prefix) error: \(error)")
            if rank == 0 { return "the root threw \(error)" }
            guard error.code != nil, error.operation == "MPI_Bcast" else {
                return "not an error from MPI_Bcast: \(error)"
            }
            return nil
        }
        return rank == 0 ? nil : "no error on a receiving rank"
    }
}

/// Finalises twice (which must be harmless), then tries a collective:
/// with MPI it must be refused, without MPI it is still a no-op.
func checkAfterFinalize(expectMPI: Bool) {
    Communicator.finalize()
    Communicator.finalize()
    run("after-finalize") {
        var data: [Int64] = [Int64(rank)]
        if expectMPI {
            return expectRefusal("already been finalised") {
                try world.allreduce(&data, .sum)
            }
        }
        try world.allreduce(&data, .sum)
        return compare(data, [Int64(rank)])
    }
}

if let abortCode {
    if rank == 0 {
        print("\(prefix) aborting with \(abortCode)")
        world.abort(code: abortCode)
    }
    // The other ranks wait to be killed by the abort.
    try? world.barrier()
    print("\(prefix) FAIL survived the abort")
    exit(1)
}
if provokeMPIError {
    runMPIError()
} else {
    runChecks()
}
if let expectMPI {
    checkAfterFinalize(expectMPI: expectMPI)
}
print("\(prefix) done: \(checkCount) checks, \(failureCount) failed")
Communicator.finalize()
exit(failureCount == 0 ? 0 : 1)
