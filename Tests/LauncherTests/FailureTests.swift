import Foundation
import Network
import XCTest

/// A failure on any one rank ends the whole job soon, with that rank's
/// message; non-finite values stop (or skip) on every rank together.
final class FailureTests: XCTestCase {
    /// Generous for a debug build under mpirun, tight enough to tell a
    /// prompt exit from a rank left waiting until the test's timeout.
    static let limit: TimeInterval = 10

    /// An error before a step on rank R (agreed in the step's all-reduce)
    /// or after the backward pass (while the others already wait in the
    /// reductions: MPI_Abort must end them), on rank 0 and on rank 1 of 2
    /// and of 3 ranks.
    func testErrorOnOneRankEndsTheJob() throws {
        let job = try RobustnessJob(test: self)
        let cases: [(ranks: Int, rank: Int, kind: String)] = [
            (2, 0, "error"), (2, 1, "late-error"),
            (3, 0, "late-error"), (3, 1, "error"),
        ]
        for (ranks, rank, kind) in cases {
            let name = "fail\(ranks)-\(rank)-\(kind)"
            let context = "\(kind) on rank \(rank) of \(ranks)"
            let started = Date()
            let result = try job.run(
                ranks: ranks, job.arguments(name),
                environment: ["HEADLINE_TEST_FAIL": "\(rank):7:\(kind)"])
            let took = Date().timeIntervalSince(started)
            XCTAssertEqual(result.status, 1, context + result.transcript)
            XCTAssertFalse(result.timedOut, context)
            XCTAssertLessThan(took, FailureTests.limit, context)
            XCTAssertEqual(
                occurrences(
                    of: "rank \(rank): injected test failure", in: result.stderr
                ),
                1, context + result.transcript)
            XCTAssertTrue(
                result.stderr.contains(
                    "(HEADLINE_TEST_FAIL, \(kind)) at global "
                        + "step 7"), context + result.transcript)
            // The epoch before the failure finished; the failing one did not.
            XCTAssertTrue(result.stdout.contains("Epoch 2/3"), context)
            XCTAssertEqual(
                job.checkpointFiles(name), ["ckpt-e0001-s000000.safetensors"],
                context)
            XCTAssertFalse(
                FileManager.default.fileExists(atPath: job.weights(name)),
                context)
        }
    }

    /// Case 13's kind of fault: rank 0 cannot write the checkpoint folder,
    /// up front (a path below a plain file) or in the middle of training
    /// (the folder replaced by a file after the first checkpoint). Every
    /// rank stops soon, and the message names the path.
    func testUnwritableCheckpointFolderEndsTheJob() throws {
        let job = try RobustnessJob(test: self)
        let blocker = job.dir + "/blocker"
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: blocker, contents: Data("x".utf8)))
        for ranks in [1, 2] {
            var arguments = job.arguments("up\(ranks)", checkpoints: false)
            arguments += ["--checkpoint-dir", blocker + "/ckpt"]
            let started = Date()
            let result = try job.run(ranks: ranks, arguments)
            XCTAssertEqual(result.status, 1, result.transcript)
            XCTAssertLessThan(
                Date().timeIntervalSince(started), FailureTests.limit)
            XCTAssertTrue(
                result.stderr.contains(blocker + "/ckpt"), result.transcript)
            XCTAssertFalse(
                result.stdout.contains("Epoch 1/"), result.transcript)
        }

        let name = "middle"
        let running = try job.start(
            ranks: 2, job.arguments(name, extra: ["--checkpoint-every", "2"]),
            environment: ["HEADLINE_TEST_STEP_DELAY_MS": "40"])
        XCTAssertTrue(
            running.wait(upTo: 30) { !job.checkpointFiles(name).isEmpty })
        let folder = job.checkpoints(name)
        XCTAssertEqual(rename(folder, folder + ".moved"), 0)
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: folder, contents: Data("x".utf8)))
        let moved = Date()
        let result = running.finish()
        XCTAssertEqual(result.status, 1, result.transcript)
        XCTAssertLessThan(Date().timeIntervalSince(moved), FailureTests.limit)
        // Whichever write or listing of the folder meets the file first
        // (it depends on the timing) reports it; the message names the
        // checkpoint folder either way.
        XCTAssertTrue(result.stderr.contains(folder), result.transcript)
        XCTAssertEqual(
            occurrences(of: "headline-trainer: error:", in: result.stderr), 1,
            result.transcript)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: job.weights(name)))
    }

    /// A NaN gradient on rank 1 alone: after the all-reduce every rank
    /// sees it, all stop in that step with one message, the step is not
    /// applied, and the last checkpoint (the step before) is good: a
    /// resume from it ends bit-identical to the run that never failed.
    func testNonFiniteGradientStopsEveryRank() throws {
        let job = try RobustnessJob(test: self)
        let reference = try job.reference(ranks: 2)
        let name = "nan"
        let options = ["--checkpoint-every", "1"]
        let result = try job.run(
            ranks: 2, job.arguments(name, extra: options),
            environment: ["HEADLINE_TEST_FAIL": "1:4:nan"])
        assertStoppedForNaNBias(result)
        XCTAssertEqual(
            job.checkpointFiles(name).last, "ckpt-e0000-s000003.safetensors")
        let resumed = try job.run(
            ranks: 2, job.arguments(name, extra: options + ["--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.transcript)
        _ = try job.assertSameOutputs(name, as: reference, "after a NaN stop")
    }

    /// The same NaN between machines, where the dense block's all-reduce
    /// starts inside the backward pass (overlapping the embedding rows'
    /// product): the fault lands before it starts, so every rank still
    /// sees it and stops in that step.
    func testNonFiniteGradientStopsEveryRankThroughMessages() throws {
        let job = try RobustnessJob(test: self)
        let name = "nan-messages"
        let result = try job.run(
            ranks: 2, job.arguments(name, extra: []),
            environment: [
                "HEADLINE_TEST_FAIL": "1:4:nan", "HEADLINE_SHARED_MEMORY": "0",
            ])
        assertStoppedForNaNBias(result)
    }

    /// The job failed once, with the message of the `nan` fault at step 4.
    private func assertStoppedForNaNBias(
        _ result: CLIResult, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(
            result.status, 1, result.transcript, file: file, line: line)
        XCTAssertEqual(
            occurrences(
                of: "the gradient of 'main_output/bias' became non-finite "
                    + "(nan) in epoch 1, step 4", in: result.stderr),
            1, result.transcript, file: file, line: line)
    }

    /// The exchanges the row tests run through: sharded through shared
    /// memory and through messages, and the dense all-reduce of the table.
    private let rowExchanges: [(shared: String, options: [String])] = [
        ("1", []), ("0", []), ("1", ["--gradient-exchange", "dense"]),
    ]

    /// A NaN in one embedding row on rank 1 alone: sharded, only that
    /// row's owner sums it, and only rank 1 holds the bad part, yet every
    /// rank stops in that step with one message, through shared memory
    /// and through messages alike, and with the dense exchange.
    func testNonFiniteEmbeddingRowStopsEveryRank() throws {
        let job = try RobustnessJob(test: self)
        for (shared, options) in rowExchanges {
            let name = "row-nan-\(shared)-\(options.count)"
            let result = try job.run(
                ranks: 2,
                job.arguments(
                    name, extra: ["--checkpoint-every", "1"] + options),
                environment: [
                    "HEADLINE_TEST_FAIL": "1:4:row-nan",
                    "HEADLINE_SHARED_MEMORY": shared,
                ])
            XCTAssertEqual(result.status, 1, result.transcript)
            XCTAssertEqual(
                occurrences(
                    of: "the gradient of 'embedding/embeddings' became "
                        + "non-finite (nan) in epoch 1, step 4",
                    in: result.stderr),
                1, result.transcript)
            XCTAssertEqual(
                job.checkpointFiles(name).last,
                "ckpt-e0000-s000003.safetensors", result.transcript)
        }
    }

    /// Finite gradient rows on two ranks whose sum overflows: each part
    /// passes any look at one rank's rows alone, but the owner's sum is
    /// infinite, and the step is refused on every rank. With one rank's
    /// rows that large and the other's ordinary, every sum stays finite
    /// and the run goes on.
    func testRowSumThatOverflowsStopsEveryRank() throws {
        let job = try RobustnessJob(test: self)
        for (shared, options) in rowExchanges {
            let name = "overflow-\(shared)-\(options.count)"
            let result = try job.run(
                ranks: 2, job.arguments(name, extra: options),
                environment: [
                    "HEADLINE_TEST_FAIL": "0:4:row-overflow,1:4:row-overflow",
                    "HEADLINE_SHARED_MEMORY": shared,
                ])
            XCTAssertEqual(result.status, 1, result.transcript)
            XCTAssertEqual(
                occurrences(
                    of: "the gradient of 'embedding/embeddings' became "
                        + "non-finite (inf) in epoch 1, step 4",
                    in: result.stderr),
                1, result.transcript)
            let alone = try job.run(
                ranks: 2, job.arguments(name + "-alone", extra: options),
                environment: [
                    "HEADLINE_TEST_FAIL": "1:4:row-overflow",
                    "HEADLINE_SHARED_MEMORY": shared,
                ])
            XCTAssertEqual(alone.status, 0, alone.transcript)
            let weights = try readTensors(job.weights(name + "-alone"))
            for (tensor, array) in weights {
                XCTAssertTrue(array.floats().allSatisfy(\.isFinite), tensor)
            }
        }
    }

    /// With --skip-nonfinite the same NaN skips step 4 on every rank: its
    /// checkpoint holds exactly the weights and optimizer state of step
    /// 3's, the run finishes and says how many steps it skipped.
    func testSkipNonFiniteSkipsTheStepOnEveryRank() throws {
        let job = try RobustnessJob(test: self)
        let name = "skip"
        let result = try job.run(
            ranks: 2,
            job.arguments(
                name,
                extra: [
                    "--checkpoint-every", "1", "--keep-checkpoints", "100",
                    "--skip-nonfinite",
                ]),
            environment: ["HEADLINE_TEST_FAIL": "1:4:nan"])
        XCTAssertEqual(result.status, 0, result.transcript)
        XCTAssertEqual(
            occurrences(
                of: "skipped the step (--skip-nonfinite)", in: result.stdout),
            1, result.transcript)
        // Once per job, from rank 0, like every other line.
        XCTAssertEqual(
            occurrences(of: "skipped 1 step(s) in all", in: result.stdout), 1,
            result.transcript)
        let folder = job.checkpoints(name)
        let before = try readTensors(folder + "/ckpt-e0000-s000003.safetensors")
        let after = try readTensors(folder + "/ckpt-e0000-s000004.safetensors")
        let next = try readTensors(folder + "/ckpt-e0001-s000000.safetensors")
        for tensor in ["parameters", "velocity"] {
            let a = try XCTUnwrap(before[tensor]).floats().map(\.bitPattern)
            let b = try XCTUnwrap(after[tensor]).floats().map(\.bitPattern)
            let c = try XCTUnwrap(next[tensor]).floats().map(\.bitPattern)
            XCTAssertEqual(a, b, "\(tensor) changed in the skipped step")
            XCTAssertNotEqual(b, c, "\(tensor) did not change in step 5")
        }
        let metadata = try SafeTensors.readMetadata(
            contentsOf: folder + "/ckpt-e0000-s000004.safetensors")
        XCTAssertEqual(metadata["iterations"], "3")
        XCTAssertEqual(metadata["skipped_steps"], "1")
        let weights = try readTensors(job.weights(name))
        for (tensor, array) in weights {
            XCTAssertTrue(array.floats().allSatisfy(\.isFinite), tensor)
        }
    }
}
