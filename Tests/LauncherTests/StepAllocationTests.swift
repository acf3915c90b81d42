import CAllocationCount
import Collective
import XCTest

@testable import Launcher
import Network

/// A training step allocates nothing: every buffer it uses is made before
/// the first step (a step of the full-size model runs in milliseconds, and
/// a heap allocation there costs time and, at the size of a workspace,
/// page faults each step).
final class StepAllocationTests: XCTestCase {
    /// Counts the heap allocations of this thread between the ends of two
    /// consecutive steps, in an epoch after a first one has warmed up
    /// whatever is made lazily, in a world of one.
    func testTrainingStepsAllocateNothing() throws {
        try checkCounterCounts()
        let counts = try stepAllocations(
            comm: try Communicator.world(), exchange: .auto)
        XCTAssertEqual(
            counts, Array(repeating: 0, count: counts.count),
            "heap allocations in each training step after the first")
    }

    /// The same on two ranks under mpirun, with each exchange: the
    /// sparse one through shared memory and through messages, and the
    /// dense all-reduce. This test starts mpirun on this very test, which
    /// then finds itself a rank (`innerRun` set) and measures.
    func testStepsOnTwoRanksAllocateNothing() throws {
        let inner = ProcessInfo.processInfo.environment[innerRun]
        guard let inner else {
            guard let bundle = Bundle.main.executablePath else {
                return XCTFail("no path to this test executable")
            }
            let filter =
                "LauncherTests.StepAllocationTests/"
                + "testStepsOnTwoRanksAllocateNothing"
            for (mode, shared) in [
                ("sparse", "1"), ("sparse", "0"), ("dense", "1"),
            ] {
                let result = try CLI.runProgram(
                    try CLI.mpirun(),
                    [
                        "--oversubscribe", "--bind-to", "none", "-np", "2",
                        bundle, filter,
                    ],
                    environment: [
                        innerRun: mode, "HEADLINE_SHARED_MEMORY": shared,
                    ])
                XCTAssertEqual(
                    result.status, 0,
                    "exchange \(mode), shared memory \(shared):\n"
                        + result.transcript)
                XCTAssertEqual(
                    occurrences(
                        of: "Executed 1 test, with 0 failures",
                        in: result.output), 2 * 2, result.transcript)
            }
            return
        }
        let world = try Communicator.world()
        defer { Communicator.finalize() }
        XCTAssertEqual(world.size, 2)
        try checkCounterCounts()
        let mode = try XCTUnwrap(ExchangeMode(rawValue: inner))
        let counts = try stepAllocations(comm: world, exchange: mode)
        XCTAssertEqual(
            counts, Array(repeating: 0, count: counts.count),
            "heap allocations on rank \(world.rank) in each training step "
                + "after the first, exchange \(mode)")
    }

    /// Set in the ranks `testStepsOnTwoRanksAllocateNothing` starts, to
    /// the exchange they use.
    private let innerRun = "HEADLINE_ALLOCATION_TEST_EXCHANGE"

    /// The allocations of this thread in each step of a second epoch but
    /// its first (whose start holds the epoch's own work), counted from
    /// the end of one step to the end of the next. The batches differ in
    /// length and in their distinct ids, and the last one is partial, so
    /// the sparse embedding paths see different numbers of rows.
    private func stepAllocations(
        comm: Communicator, exchange: ExchangeMode
    ) throws -> [Int] {
        XCTAssertEqual(
            allocation_count_available(), 1,
            "allocations are not counted in this build (a sanitizer's "
                + "allocator replaces the counter); run this test in a "
                + "plain build")
        let config = ModelConfig(
            vocabularySize: 300, embeddingWidth: 16, sequenceLength: 12,
            lstmUnits: 6, auxFeatures: 5, denseUnits: 8, denseLayers: 3)
        let rows = 100
        var rng = Launcher.SeededGenerator(seed: 11)
        var ids: [Int32] = []
        for _ in 0..<rows {
            // Padded at the front, as the importer pads short headlines.
            let length = 1 + Int(rng.next() % 12)
            ids += Array(repeating: 0, count: 12 - length)
            ids += (0..<length).map { _ in Int32(1 + rng.next() % 299) }
        }
        let data = TrainingData(
            rows: rows, sequenceLength: 12, auxFeatures: 5, ids: ids,
            aux: (0..<rows * 5).map { Float($0 % 7) / 7 },
            labels: (0..<rows).map { Float(($0 * 5 / 3) % 2) })
        var settings = TrainSettings()
        settings.globalBatch = 16
        settings.exchange = exchange
        let model = HeadlineModel(config: config)
        Initializers.kerasDefaults(
            &model.parameters, layout: model.layout, seed: 5)
        let trainer = Trainer(
            comm: comm, model: model, settings: settings, train: data,
            validation: nil)
        _ = try trainer.runEpoch(0)

        var counts: [Int] = []
        var counting = false
        _ = try trainer.runEpoch(1) { _, _ in
            if counting { counts.append(allocation_count_stop()) }
            allocation_count_start()
            counting = true
        }
        // The epoch's own work after its last step is not a step's.
        _ = allocation_count_stop()
        XCTAssertEqual(counts.count, trainer.stepsPerEpoch - 1)
        return counts
    }

    /// The counter sees an allocation that Swift makes, and only while it
    /// counts: without this the test above could pass with a counter that
    /// never counts.
    private func checkCounterCounts() throws {
        allocation_count_start()
        let made = [Int](repeating: 1, count: 1000 + Int.random(in: 0..<2))
        let during = allocation_count_stop()
        XCTAssertGreaterThan(during, 0, "an Array of \(made.count) Ints")
        let after = [Int](repeating: 2, count: 1000 + made.count)
        allocation_count_start()
        XCTAssertEqual(allocation_count_stop(), 0)
        XCTAssertEqual(after.count, 1000 + made.count)
    }
}
