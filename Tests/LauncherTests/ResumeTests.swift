import Foundation
import Network
import XCTest

/// Checkpoints and --resume, end to end: a run killed or stopped anywhere
/// and resumed ends with the same bytes as the run never interrupted.
final class ResumeTests: XCTestCase {
    // MARK: SIGKILL

    func testKillAndResumeIsBitIdenticalOnOneRank() throws {
        try checkKillAndResume(ranks: 1)
    }

    func testKillAndResumeIsBitIdenticalOnTwoRanks() throws {
        try checkKillAndResume(ranks: 2)
    }

    /// Three random steps: a rank sends itself SIGKILL before that step
    /// (checkpoints every 1 or 2 steps), and the resumed run must write
    /// exactly the reference's weights and metrics files.
    private func checkKillAndResume(ranks: Int) throws {
        let job = try RobustnessJob(test: self)
        let reference = try job.reference(ranks: ranks)
        var random = SystemRandomNumberGenerator()
        let points = (0..<3).map { _ in
            Int.random(in: 2...job.totalSteps, using: &random)
        }
        for (trial, step) in points.enumerated() {
            let name = "trial\(trial)"
            let victim = trial % ranks
            let every = 1 + trial % 2
            let context =
                "\(ranks) rank(s), rank \(victim) killed before "
                + "step \(step) of \(job.totalSteps), checkpoints every "
                + "\(every) (points \(points))"
            let options = ["--checkpoint-every", "\(every)"]
            let killed = try job.run(
                ranks: ranks, job.arguments(name, extra: options),
                environment: ["HEADLINE_TEST_FAIL": "\(victim):\(step):kill"])
            if ranks == 1 {
                XCTAssertTrue(killed.signaled, context + killed.transcript)
                XCTAssertEqual(killed.status, SIGKILL, context)
            } else {
                XCTAssertNotEqual(killed.status, 0, context + killed.transcript)
            }
            XCTAssertFalse(
                FileManager.default.fileExists(atPath: job.weights(name)),
                context)
            let resumed = try job.run(
                ranks: ranks, job.arguments(name, extra: options + ["--resume"])
            )
            XCTAssertEqual(resumed.status, 0, context + resumed.transcript)
            let expected = (step - 1) / every * every
            XCTAssertTrue(
                resumed.stdout.contains(
                    expected == 0 ? "no checkpoint" : "resuming from"),
                context + resumed.transcript)
            _ = try job.assertSameOutputs(name, as: reference, context)
        }
    }

    // MARK: Another rank count

    /// 2 ranks killed, resumed on 1; 1 rank killed, resumed on 3: the
    /// remaining batches split differently, so the weights agree to
    /// rounding, and the run says what it does.
    func testResumeOnAnotherRankCount() throws {
        let job = try RobustnessJob(test: self)
        _ = try job.reference(ranks: 1)
        let reference = try readTensors(job.weights("reference"))
        let referenceMetrics = try readMetrics(job.metrics("reference"))
        for (before, after, step) in [(2, 1, 8), (1, 3, 12)] {
            let name = "r\(before)to\(after)"
            let context =
                "\(before) rank(s) killed before step \(step), "
                + "resumed on \(after)"
            let options = ["--checkpoint-every", "1"]
            _ = try job.run(
                ranks: before, job.arguments(name, extra: options),
                environment: ["HEADLINE_TEST_FAIL": "0:\(step):kill"])
            let resumed = try job.run(
                ranks: after, job.arguments(name, extra: options + ["--resume"])
            )
            XCTAssertEqual(resumed.status, 0, context + resumed.transcript)
            XCTAssertTrue(
                resumed.stdout.contains(
                    "written by \(before) rank(s); resuming on \(after) rank(s)"
                ),
                context + resumed.transcript)
            let weights = try readTensors(job.weights(name))
            XCTAssertLessThanOrEqual(
                maxAbsDifference(reference, weights), 1e-5, context)
            let metrics = try readMetrics(job.metrics(name))
            XCTAssertEqual(metrics.count, referenceMetrics.count, context)
            for (a, b) in zip(referenceMetrics, metrics) {
                for (key, value) in a {
                    let x = try XCTUnwrap(value as? Double, key)
                    let y = try XCTUnwrap(b[key] as? Double, key)
                    XCTAssertLessThanOrEqual(abs(x - y), 1e-5, context + key)
                }
            }
        }
    }

    // MARK: SIGTERM and SIGINT

    /// A single process: SIGTERM (exit 143) and SIGINT (exit 130) stop it
    /// at the next step with a checkpoint there; --resume finishes the
    /// run bit-identically.
    func testSignalsStopASingleProcessWithACheckpoint() throws {
        let job = try RobustnessJob(test: self)
        let reference = try job.reference(ranks: 1)
        for (signal, status) in [(SIGTERM, 143), (SIGINT, 130)] {
            try stopAndResume(
                job, reference, ranks: 1, name: "signal\(signal)",
                stepDelay: 40, waitUpTo: 20, status: Int32(status),
                signalName: signal == SIGTERM ? "SIGTERM" : "SIGINT",
                context: "signal \(signal)"
            ) { kill($0.pid, signal) }
        }
    }

    /// SIGTERM to rank 0 alone under mpirun: the flag reaches rank 1
    /// through the step's agreement, both stop before the same step, and
    /// mpirun passes on the ranks' 143.
    func testSigtermToRankZeroUnderMPI() throws {
        let job = try RobustnessJob(test: self)
        try stopAndResume(
            job, try job.reference(ranks: 2), ranks: 2, name: "rank0",
            stepDelay: 40, status: 143, signalName: "SIGTERM",
            context: "SIGTERM to rank 0"
        ) { running in
            let rank0 = try XCTUnwrap(
                mpiRanks(of: running.pid)[0], "rank 0 not found")
            kill(rank0, SIGTERM)
        }
    }

    /// SIGTERM to mpirun itself, as a scheduler sends it. OpenMPI 4.1
    /// does not hand it on at once: about a second later every rank gets
    /// SIGTERM, and a second after that SIGKILL
    /// (odls_base_sigkill_timeout); mpirun itself exits 1. Within that
    /// second the ranks agree, rank 0 writes the checkpoint, and all exit.
    /// Steps of 120 ms leave about 1.5 s of training after the signal.
    func testSigtermToMpirunReachesEveryRank() throws {
        let job = try RobustnessJob(test: self)
        try stopAndResume(
            job, try job.reference(ranks: 2), ranks: 2, name: "mpirun",
            stepDelay: 120, status: nil, signalName: "SIGTERM",
            context: "SIGTERM to mpirun"
        ) { kill($0.pid, SIGTERM) }
    }

    /// Starts run `name` with steps of at least `stepDelay` ms and a
    /// checkpoint every 2 steps, waits for the first checkpoint, stops the
    /// run through `send`, checks the stop (`status`; nil: any failing
    /// status), resumes it and checks it ends exactly as `reference`.
    private func stopAndResume(
        _ job: RobustnessJob, _ reference: (weights: Data, metrics: Data),
        ranks: Int, name: String, stepDelay: Int,
        waitUpTo seconds: TimeInterval = 30, status: Int32?,
        signalName: String, context: String,
        send: (RunningCLI) throws -> Void,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let running = try job.start(
            ranks: ranks,
            job.arguments(name, extra: ["--checkpoint-every", "2"]),
            environment: ["HEADLINE_TEST_STEP_DELAY_MS": "\(stepDelay)"])
        XCTAssertTrue(
            running.wait(upTo: seconds) { !job.checkpointFiles(name).isEmpty },
            "no checkpoint appeared", file: file, line: line)
        try send(running)
        let stopped = running.finish()
        if status == nil {
            XCTAssertNotEqual(
                stopped.status, 0, stopped.transcript, file: file, line: line)
        }
        try checkStopped(
            stopped, job: job, name: name, status: status,
            signalName: signalName, file: file, line: line)
        let resumed = try job.run(
            ranks: ranks,
            job.arguments(name, extra: ["--checkpoint-every", "2", "--resume"]))
        XCTAssertEqual(
            resumed.status, 0, resumed.transcript, file: file, line: line)
        _ = try job.assertSameOutputs(
            name, as: reference, context, file: file, line: line)
    }

    /// What every stopped run shows: the status, one message naming the
    /// signal and the checkpoint, that checkpoint on disk at the step the
    /// message names, and no final weights.
    private func checkStopped(
        _ result: CLIResult, job: RobustnessJob, name: String,
        status: Int32?, signalName: String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        if let status {
            XCTAssertFalse(
                result.signaled, result.transcript, file: file, line: line)
            XCTAssertEqual(
                result.status, status, result.transcript, file: file, line: line
            )
        }
        XCTAssertEqual(
            occurrences(
                of: "\(signalName): stopped before step", in: result.output),
            1, result.transcript, file: file, line: line)
        let files = job.checkpointFiles(name)
        let newest = try XCTUnwrap(files.last, file: file, line: line)
        XCTAssertTrue(
            result.stdout.contains(
                "checkpoint \(job.checkpoints(name))/\(newest)"),
            "the message names another file than the newest, \(newest):\n"
                + result.transcript, file: file, line: line)
        XCTAssertNotEqual(
            newest,
            "ckpt-e\(String(format: "%04d", job.epochs))-s000000.safetensors",
            "the run finished before the signal", file: file, line: line)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: job.weights(name)),
            "a stopped run wrote its final weights", file: file, line: line)
    }

    // MARK: Epochs, damage, settings

    /// Case 17's rule: 1 epoch, then --resume with --epochs 3, continues
    /// with epoch 2's order and ends bit-identical to 3 epochs in one go.
    func testResumeWithMoreEpochsContinues() throws {
        let job = try RobustnessJob(test: self)
        let reference = try job.reference(ranks: 1)
        var short = job
        short.epochs = 1
        let first = try job.run(ranks: 1, short.arguments("more"))
        XCTAssertEqual(first.status, 0, first.transcript)
        XCTAssertEqual(
            job.checkpointFiles("more"), ["ckpt-e0001-s000000.safetensors"])
        let resumed = try job.run(
            ranks: 1, job.arguments("more", extra: ["--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.transcript)
        XCTAssertTrue(
            resumed.stdout.hasPrefix("resuming from"), resumed.transcript)
        XCTAssertFalse(resumed.stdout.contains("Epoch 1/3"), resumed.transcript)
        _ = try job.assertSameOutputs("more", as: reference, "1 + 2 epochs")

        // Asking for fewer epochs than the checkpoint has done is refused
        // rather than silently returning later weights.
        let killed = try job.run(
            ranks: 1,
            job.arguments("past", extra: ["--checkpoint-every", "1"]),
            environment: ["HEADLINE_TEST_FAIL": "0:8:kill"])
        XCTAssertTrue(killed.signaled, killed.transcript)
        let past = try job.run(
            ranks: 1,
            short.arguments(
                "past", extra: ["--checkpoint-every", "1", "--resume"]))
        XCTAssertEqual(past.status, 1, past.transcript)
        XCTAssertTrue(
            past.stderr.contains("past the --epochs 1"), past.transcript)
    }

    /// A truncated newest checkpoint is reported by name and the one
    /// before it used; the result is still the reference's. With every
    /// checkpoint damaged, --resume is an error; with none, it starts.
    func testDamagedCheckpointsAndNone() throws {
        let job = try RobustnessJob(test: self)
        let reference = try job.reference(ranks: 1)
        let options = ["--checkpoint-every", "2"]
        let killed = try job.run(
            ranks: 1, job.arguments("damaged", extra: options),
            environment: ["HEADLINE_TEST_FAIL": "0:10:kill"])
        XCTAssertTrue(killed.signaled, killed.transcript)
        let files = job.checkpointFiles("damaged")
        XCTAssertEqual(files.count, 3, "\(files)")  // --keep-checkpoints 3
        let newest = job.checkpoints("damaged") + "/" + files.last!
        let bytes = try Data(contentsOf: URL(fileURLWithPath: newest))
        try bytes.prefix(bytes.count - 100).write(
            to: URL(fileURLWithPath: newest))
        let resumed = try job.run(
            ranks: 1, job.arguments("damaged", extra: options + ["--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.transcript)
        XCTAssertTrue(
            resumed.stderr.contains("checkpoint \(newest) is damaged"),
            resumed.transcript)
        XCTAssertTrue(
            resumed.stdout.contains(
                "resuming from "
                    + job.checkpoints("damaged") + "/" + files[files.count - 2]),
            resumed.transcript)
        _ = try job.assertSameOutputs(
            "damaged", as: reference, "damaged newest")

        // Every checkpoint damaged: an error naming them.
        for name in job.checkpointFiles("damaged") {
            let path = job.checkpoints("damaged") + "/" + name
            var bytes = [UInt8](
                try Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[bytes.count / 2] ^= 0xFF
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        let refused = try job.run(
            ranks: 1, job.arguments("damaged", extra: options + ["--resume"]))
        XCTAssertEqual(refused.status, 1, refused.transcript)
        XCTAssertTrue(
            refused.stderr.contains("no valid checkpoint"), refused.transcript)

        // An empty folder: --resume starts from the beginning.
        let fresh = try job.run(
            ranks: 1, job.arguments("fresh", extra: ["--resume"]))
        XCTAssertEqual(fresh.status, 0, fresh.transcript)
        XCTAssertTrue(fresh.stdout.contains("no checkpoint"), fresh.transcript)
        _ = try job.assertSameOutputs(
            "fresh", as: reference, "resume, none yet")
    }

    /// A setting that must match, changed on resume, is refused naming it;
    /// so is a fresh run into a folder that holds another run's
    /// checkpoints.
    func testChangedSettingsAreRefused() throws {
        let job = try RobustnessJob(test: self)
        var short = job
        short.epochs = 1
        let first = try job.run(ranks: 1, short.arguments("s"))
        XCTAssertEqual(first.status, 0, first.transcript)
        let changes: [([String], String)] = [
            (["--batch-size", "6"], "--batch-size: the checkpoint has '5'"),
            (["--learning-rate", "0.02"], "--learning-rate"),
            (["--no-shuffle"], "--no-shuffle"),
        ]
        for (change, expected) in changes {
            var arguments = job.arguments("s", extra: ["--resume"])
            if let at = arguments.firstIndex(of: change[0]), change.count == 2 {
                arguments[at + 1] = change[1]
            } else {
                arguments += change
            }
            let result = try job.run(ranks: 1, arguments)
            XCTAssertEqual(result.status, 1, result.transcript)
            XCTAssertTrue(result.stderr.contains(expected), result.transcript)
        }
        // Another data file with the same shape.
        try DataSpec(rows: 30, seed: 99).write(to: job.data)
        let data = try job.run(
            ranks: 1, job.arguments("s", extra: ["--resume"]))
        XCTAssertEqual(data.status, 1, data.transcript)
        XCTAssertTrue(
            data.stderr.contains("the data file main_input.npy"),
            data.transcript)

        let again = try job.run(ranks: 1, job.arguments("s"))
        XCTAssertEqual(again.status, 1, again.transcript)
        XCTAssertTrue(again.stderr.contains("pass --resume"), again.transcript)
    }
}
