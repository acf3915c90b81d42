import XCTest

@testable import Collective

/// The world of one, in this process: every collective is local and MPI
/// is never initialised.
final class WorldOfOneTests: XCTestCase {
    /// Built directly rather than through `world()`, so these tests do not
    /// depend on the environment `swift test` runs in.
    let world = Communicator(worldOfOneWithChunkLimit: 3)

    override func tearDown() {
        // Whatever a test did, a world of one must not have started MPI.
        XCTAssertFalse(Communicator.mpiHasBeenInitialized())
        super.tearDown()
    }

    func testWorldWithoutLauncherIsWorldOfOne() throws {
        if startedByMPILauncher(environmentValue)
            || mpiForced(environmentValue)
        {
            throw XCTSkip(
                "the environment of this test process names an MPI launcher "
                    + "or HEADLINE_FORCE_MPI, so world() would use MPI here")
        }
        let first = try Communicator.world()
        XCTAssertEqual(first.rank, 0)
        XCTAssertEqual(first.size, 1)
        XCTAssertFalse(first.isDistributed)
        XCTAssertNil(first.comm)
        XCTAssertTrue(try Communicator.world() === first)
        var data: [Float] = [1, 2, 3]
        try first.allreduce(&data, .sum)
        XCTAssertEqual(data, [1, 2, 3])
    }

    func testRankAndSize() {
        XCTAssertEqual(world.rank, 0)
        XCTAssertEqual(world.size, 1)
        XCTAssertFalse(world.isDistributed)
    }

    func testAllreduceLeavesValuesUnchanged() throws {
        for op in [ReductionOp.sum, .max, .min] {
            var floats: [Float] = [1.5, -2, 3, 0, 7, 8, 9]
            try world.allreduce(&floats, op)
            XCTAssertEqual(floats, [1.5, -2, 3, 0, 7, 8, 9])
            var doubles: [Double] = [-0.25, 1e300]
            try world.allreduce(&doubles, op)
            XCTAssertEqual(doubles, [-0.25, 1e300])
            var ints32: [Int32] = [.min, 0, .max]
            try world.allreduce(&ints32, op)
            XCTAssertEqual(ints32, [.min, 0, .max])
            var ints64: [Int64] = [.min, 5, .max]
            try world.allreduce(&ints64, op)
            XCTAssertEqual(ints64, [.min, 5, .max])
        }
    }

    func testAllreduceOnBufferAndEmptyArray() throws {
        var data: [Int64] = [4, 5, 6, 7]
        try data.withUnsafeMutableBufferPointer {
            try world.allreduce($0, .max)
        }
        XCTAssertEqual(data, [4, 5, 6, 7])
        var empty: [Double] = []
        try world.allreduce(&empty, .sum)
        XCTAssertEqual(empty, [])
    }

    func testBroadcastIsIdentity() throws {
        var data: [Double] = [3, 1, 4, 1, 5]
        try world.broadcast(&data, root: 0)
        XCTAssertEqual(data, [3, 1, 4, 1, 5])
        var ints: [Int32] = [9, 8]
        try ints.withUnsafeMutableBufferPointer {
            try world.broadcast($0, root: 0)
        }
        XCTAssertEqual(ints, [9, 8])
        var bytes = Array("héllo".utf8)
        try world.broadcast(bytes: &bytes, root: 0)
        XCTAssertEqual(bytes, Array("héllo".utf8))
    }

    func testAllgatherReturnsOwnValues() throws {
        XCTAssertEqual(try world.allgather([Float(1), 2, 3]), [1, 2, 3])
        XCTAssertEqual(try world.allgather([Int64]()), [])
        XCTAssertEqual(
            try world.allgatherVariable([Int32(5), 6, 7, 8, 9]),
            [5, 6, 7, 8, 9])
        XCTAssertEqual(try world.allgatherVariable([Double]()), [])
    }

    /// The buffer forms copy this rank's values, even past the piece
    /// limit of 3 (a world of one makes no MPI call to limit).
    func testBufferCollectivesCopyOwnValues() throws {
        let mine: [Float] = [1, 2, 3, 4, 5]
        var out = [Float](repeating: -1, count: 6)
        try mine.withUnsafeBufferPointer { send in
            try out.withUnsafeMutableBufferPointer {
                try world.allgather(send, into: $0)
            }
        }
        XCTAssertEqual(out, [1, 2, 3, 4, 5, -1])
        out = [Float](repeating: -1, count: 5)
        let counts: [Int32] = [5]
        try mine.withUnsafeBufferPointer { send in
            try counts.withUnsafeBufferPointer { counts in
                try out.withUnsafeMutableBufferPointer {
                    try world.allgatherVariable(send, counts: counts, into: $0)
                }
            }
        }
        XCTAssertEqual(out, mine)
        out = [Float](repeating: -1, count: 5)
        try mine.withUnsafeBufferPointer { send in
            try counts.withUnsafeBufferPointer { counts in
                try out.withUnsafeMutableBufferPointer {
                    try world.alltoallVariable(
                        send, sendCounts: counts, into: $0,
                        receiveCounts: counts)
                }
            }
        }
        XCTAssertEqual(out, mine)
        var inPlace = mine
        try counts.withUnsafeBufferPointer { counts in
            try inPlace.withUnsafeMutableBufferPointer {
                try world.allgatherVariableInPlace($0, counts: counts)
            }
        }
        XCTAssertEqual(inPlace, mine)
    }

    /// Counts that do not describe the buffers are refused before any copy.
    func testBufferCollectivesRefuseBadCounts() throws {
        let mine: [Int32] = [1, 2]
        var out = [Int32](repeating: 0, count: 2)
        let cases: [([Int32], [Int32], String)] = [
            ([2, 0], [2], "2 counts for 1 ranks"),
            ([3], [3], "rank 0 sends 2 values but the counts say 3"),
            ([-1], [-1], "count -1 for rank 0 is negative"),
            ([2], [1], "sends 2 values to itself but expects 1"),
        ]
        for (sendCounts, receiveCounts, message) in cases {
            XCTAssertThrowsError(
                try mine.withUnsafeBufferPointer { send in
                    try sendCounts.withUnsafeBufferPointer { sendCounts in
                        try receiveCounts.withUnsafeBufferPointer {
                            receiveCounts in
                            try out.withUnsafeMutableBufferPointer { out in
                                if message.contains("itself") {
                                    try world.alltoallVariable(
                                        send, sendCounts: sendCounts,
                                        into: out,
                                        receiveCounts: receiveCounts)
                                } else {
                                    try world.allgatherVariable(
                                        send, counts: sendCounts, into: out)
                                }
                            }
                        }
                    }
                }
            ) { error in
                XCTAssertTrue(
                    "\(error)".contains(message), "\(error) lacks \(message)")
            }
        }
        var small = [Int32](repeating: 0, count: 1)
        XCTAssertThrowsError(
            try mine.withUnsafeBufferPointer { send in
                try small.withUnsafeMutableBufferPointer {
                    try world.allgather(send, into: $0)
                }
            }
        ) { error in
            XCTAssertTrue("\(error)".contains("holds 1 values; 2 needed"))
        }
    }

    func testStartAllreduceAndWait() throws {
        var data: [Float] = [1, 2, 3, 4, 5, 6, 7]
        try data.withUnsafeMutableBufferPointer { buffer in
            let pending = try world.startAllreduce(buffer, .sum)
            try pending.wait()
            try pending.wait()
        }
        XCTAssertEqual(data, [1, 2, 3, 4, 5, 6, 7])
    }

    func testBarrier() throws {
        try world.barrier()
    }

    func testRootOutsideWorldIsRefused() {
        var data: [Float] = [1]
        for root in [1, -1, 5] {
            XCTAssertThrowsError(try world.broadcast(&data, root: root)) {
                let error = $0 as? CollectiveError
                XCTAssertNil(error?.code)
                XCTAssertEqual(
                    error?.description,
                    "broadcast: root \(root) is outside the ranks 0..<1")
            }
        }
        var bytes: [UInt8] = [1]
        XCTAssertThrowsError(try world.broadcast(bytes: &bytes, root: 1)) {
            XCTAssertTrue($0 is CollectiveError)
        }
        XCTAssertEqual(data, [1])
        XCTAssertEqual(bytes, [1])
    }

    /// A conformance outside the four supported types is refused even
    /// where no MPI call would be made, so it fails in tests too.
    func testUnsupportedScalarIsRefused() {
        struct Half: CollectiveScalar { var bits: UInt16 }
        var data = [Half(bits: 1)]
        XCTAssertThrowsError(try world.allreduce(&data, .sum)) {
            let error = $0 as? CollectiveError
            XCTAssertNil(error?.code)
            XCTAssertEqual(error?.operation, "allreduce")
            XCTAssertTrue(
                error?.message.contains("unsupported scalar type") ?? false)
        }
        XCTAssertThrowsError(try world.allgather(data))
        XCTAssertThrowsError(try world.broadcast(&data, root: 0))
    }

    func testFinalizeWithoutMPIIsHarmless() throws {
        Communicator.finalize()
        Communicator.finalize()
        var data: [Int32] = [2]
        try world.allreduce(&data, .sum)
        XCTAssertEqual(data, [2])
    }

    func testErrorDescription() {
        let fromMPI = CollectiveError(
            operation: "MPI_Bcast", code: 15,
            message: "MPI_ERR_TRUNCATE: message truncated")
        XCTAssertEqual(
            fromMPI.description,
            "MPI_Bcast failed with MPI error 15: "
                + "MPI_ERR_TRUNCATE: message truncated")
        let refused = CollectiveError(
            operation: "allgather", code: nil, message: "counts differ")
        XCTAssertEqual(refused.description, "allgather: counts differ")
    }
}

/// The pure decisions behind the world: launcher detection, forcing,
/// piece sizes.
final class EnvironmentAndChunkTests: XCTestCase {
    private func launched(_ environment: [String: String]) -> Bool {
        startedByMPILauncher { environment[$0] }
    }

    func testNoLauncher() {
        XCTAssertFalse(launched([:]))
        XCTAssertFalse(launched(["HOME": "/root", "OMPI_MCA_btl": "self"]))
    }

    func testEachLauncherVariable() {
        XCTAssertTrue(launched(["OMPI_COMM_WORLD_SIZE": "2"]))
        XCTAssertTrue(launched(["PMIX_RANK": "0"]))
        XCTAssertTrue(launched(["PMI_RANK": "1"]))
        XCTAssertTrue(launched(["PMI_SIZE": "4"]))
    }

    func testSlurmNeedsSeveralTasksAndAProcessID() {
        XCTAssertTrue(launched(["SLURM_NTASKS": "4", "SLURM_PROCID": "0"]))
        XCTAssertFalse(launched(["SLURM_NTASKS": "1", "SLURM_PROCID": "0"]))
        XCTAssertFalse(launched(["SLURM_NTASKS": "4"]))
        XCTAssertFalse(launched(["SLURM_PROCID": "3"]))
        XCTAssertFalse(launched(["SLURM_NTASKS": "many", "SLURM_PROCID": "0"]))
    }

    func testForceNeedsExactlyOne() {
        XCTAssertTrue(mpiForced { $0 == "HEADLINE_FORCE_MPI" ? "1" : nil })
        for value in ["0", "yes", "", "true"] {
            XCTAssertFalse(
                mpiForced { $0 == "HEADLINE_FORCE_MPI" ? value : nil })
        }
        XCTAssertFalse(mpiForced { _ in nil })
    }

    func testChunkLimitFromEnvironment() {
        let name = "HEADLINE_COLLECTIVE_MAX_CHUNK"
        XCTAssertEqual(chunkLimit { _ in nil }, Int(Int32.max))
        XCTAssertEqual(chunkLimit { $0 == name ? "7" : nil }, 7)
        for bad in ["0", "-3", "x", "2147483648"] {
            XCTAssertEqual(
                chunkLimit { $0 == name ? bad : nil }, Int(Int32.max))
        }
    }

    func testChunksCoverTheRangeInOrder() {
        XCTAssertTrue(chunks(total: 0, limit: 3).isEmpty)
        let pieces = chunks(total: 10, limit: 3)
        XCTAssertEqual(pieces.map(\.offset), [0, 3, 6, 9])
        XCTAssertEqual(pieces.map(\.count), [3, 3, 3, 1])
        XCTAssertEqual(chunks(total: 3, limit: 3).map(\.count), [3])
    }

    /// Counts above Int32.max are split, never truncated.
    func testChunksOfHugeCountsFitInt32() {
        let limit = Int(Int32.max)
        let total = 2 * limit + 5
        let pieces = chunks(total: total, limit: limit)
        XCTAssertEqual(pieces.count, 3)
        XCTAssertTrue(pieces.allSatisfy { $0.count <= limit })
        XCTAssertEqual(pieces.reduce(0) { $0 + $1.count }, total)
        XCTAssertEqual(pieces.last?.offset, 2 * limit)
    }
}
