import Foundation
import Network
import XCTest

/// What the commands print and log: help, the epoch lines, the metrics
/// file, and the loss weights' effect on what is trained and reported.
final class OutputTests: XCTestCase {
    // MARK: --help

    func testCommandHelp() throws {
        let expected: [String: [String]] = [
            "train": [
                "--data", "--epochs", "--batch-size", "--learning-rate",
                "--loss-weights", "--seed", "--no-shuffle",
                "--validation-split", "--init-weights", "--save-weights",
                "--metrics", "--vocab-size", "--help",
            ],
            "predict": [
                "--weights", "--data", "--out", "--batch-size", "--help",
            ],
            "evaluate": [
                "--weights", "--data", "--loss-weights", "--batch-size",
                "--json", "--help",
            ],
        ]
        for (command, options) in expected {
            for flag in ["--help", "-h"] {
                let result = try CLI.run([command, flag])
                XCTAssertEqual(result.status, 0, result.transcript)
                XCTAssertEqual(result.stderr, "", result.transcript)
                XCTAssertTrue(
                    result.stdout.hasPrefix(
                        "usage: headline-trainer \(command)"),
                    result.transcript)
                for option in options {
                    XCTAssertTrue(
                        result.stdout.contains("  \(option)"),
                        "\(command) --help does not list \(option)\n"
                            + result.transcript)
                }
            }
        }
        // --help wins over everything else on the line, and reads nothing.
        let late = try CLI.run(["train", "--data", "/no/such", "--help"])
        XCTAssertEqual(late.status, 0, late.transcript)
        XCTAssertTrue(late.stdout.contains("--save-weights"), late.transcript)
    }

    func testTopLevelHelp() throws {
        for flag in ["--help", "-h", "help"] {
            let result = try CLI.run([flag])
            XCTAssertEqual(result.status, 0, result.transcript)
            XCTAssertEqual(result.stderr, "", result.transcript)
            XCTAssertTrue(
                result.stdout.hasPrefix("usage: headline-trainer COMMAND"),
                result.transcript)
            for command in ["train", "predict", "evaluate"] {
                XCTAssertTrue(
                    result.stdout.contains("\n  \(command) "),
                    "top-level help does not list \(command)\n"
                        + result.transcript)
            }
        }
    }

    // MARK: Standard output as a log

    /// Standard output is a file here: no carriage returns or escape
    /// sequences, one "Epoch i/N" line per epoch, in order; under mpirun
    /// the lines come once, from rank 0.
    func testEpochLinesInALogFile() throws {
        let dir = try temporaryDirectory(for: self)
        let data = try DataSpec(rows: 30).write(to: dir + "/data")
        for ranks in [1, 2] {
            let arguments =
                [
                    "train", "--data", data, "--epochs", "4", "--batch-size",
                    "8",
                    "--validation-split", "0.2",
                ] + smallModelOptions()
            let result =
                ranks == 1
                ? try CLI.run(arguments)
                : try CLI.runMPI(ranks: ranks, arguments)
            XCTAssertEqual(result.status, 0, result.transcript)
            XCTAssertFalse(result.stdout.contains("\r"), result.transcript)
            XCTAssertFalse(result.stdout.contains("\u{1B}"), result.transcript)
            XCTAssertFalse(result.stderr.contains("\r"), result.transcript)
            let epochLines = result.stdoutLines.filter {
                $0.hasPrefix("Epoch ")
            }
            XCTAssertEqual(
                epochLines, (1...4).map { "Epoch \($0)/4" }, result.transcript)
            // After each epoch line, one summary line with the step count
            // (24 training rows in batches of 8) and the validation loss.
            let summaries = result.stdoutLines.filter { $0.hasPrefix("3/3 - ") }
            XCTAssertEqual(summaries.count, 4, result.transcript)
            for line in summaries {
                XCTAssertTrue(line.contains(" - val_loss: "), line)
            }
            XCTAssertTrue(result.stdout.hasSuffix("\n"), result.transcript)
            if ranks > 1 {
                XCTAssertEqual(
                    occurrences(of: "training on 2 ranks", in: result.stdout),
                    1, result.transcript)
            }
        }
    }

    /// `evaluate` and `predict` under mpirun: one report, same numbers.
    func testEvaluateAndPredictUnderMPIMatchOneRank() throws {
        let small = try Fixtures.folder("small")
        let dir = try temporaryDirectory(for: self)
        var reports: [[String: Any]] = []
        var predictions: [[Float]] = []
        // 8 rows: 3 ranks split them unevenly; batch size 3 splits the
        // shares again.
        for ranks in [1, 3] {
            let evaluate = [
                "evaluate", "--weights", small + "/weights.safetensors",
                "--data", small, "--json", "--batch-size", "3",
            ]
            let result =
                ranks == 1
                ? try CLI.run(evaluate) : try CLI.runMPI(ranks: ranks, evaluate)
            XCTAssertEqual(result.status, 0, result.transcript)
            XCTAssertEqual(
                result.stdoutLines.filter { !$0.isEmpty }.count, 1,
                result.transcript)
            reports.append(
                try XCTUnwrap(
                    try JSONSerialization.jsonObject(
                        with: Data(result.stdout.utf8)) as? [String: Any]))
            let out = dir + "/p\(ranks).npy"
            let predict = [
                "predict", "--weights", small + "/weights.safetensors",
                "--data", small, "--out", out, "--batch-size", "2",
            ]
            let run =
                ranks == 1
                ? try CLI.run(predict) : try CLI.runMPI(ranks: ranks, predict)
            XCTAssertEqual(run.status, 0, run.transcript)
            let array = try NPY.read(contentsOf: out)
            XCTAssertEqual(array.shape, [8, 2])
            predictions.append(array.floats())
        }
        XCTAssertEqual(reports[0].keys.sorted(), reports[1].keys.sorted())
        for (key, value) in reports[0] {
            let a = try XCTUnwrap(value as? Double)
            let b = try XCTUnwrap(reports[1][key] as? Double)
            XCTAssertLessThanOrEqual(abs(a - b), 1e-9, key)
        }
        XCTAssertEqual(predictions[0], predictions[1])
    }

    // MARK: --metrics

    func testMetricsFileHasOneStrictObjectPerEpoch() throws {
        let dir = try temporaryDirectory(for: self)
        let data = try DataSpec(rows: 20).write(to: dir + "/data")
        let base = [
            "loss", "main_output_loss", "aux_output_loss",
            "main_output_accuracy", "aux_output_accuracy", "main_output_auc",
            "aux_output_auc",
        ]
        for split in ["0", "0.25"] {
            let log = dir + "/m\(split).jsonl"
            // An existing file is replaced, not appended to.
            try Data("{\"stale\": 1}\n".utf8).write(
                to: URL(fileURLWithPath: log))
            let result = try CLI.run(
                [
                    "train", "--data", data, "--epochs", "3", "--batch-size",
                    "4", "--validation-split", split, "--metrics", log,
                ] + smallModelOptions())
            XCTAssertEqual(result.status, 0, result.transcript)
            let epochs = try readMetrics(log)
            XCTAssertEqual(epochs.count, 3, "split \(split)")
            let keys = split == "0" ? base : base + base.map { "val_" + $0 }
            for (k, epoch) in epochs.enumerated() {
                XCTAssertEqual(epoch["epoch"] as? Int, k + 1)
                XCTAssertEqual(
                    Set(epoch.keys), Set(keys + ["epoch"]), "split \(split)")
                for key in keys {
                    let value = try XCTUnwrap(
                        epoch[key] as? Double, "\(key) is not a number")
                    XCTAssertTrue(value.isFinite, key)
                    if key.contains("accuracy") || key.contains("auc") {
                        XCTAssertTrue(
                            (0...1).contains(value), "\(key) \(value)")
                    } else {
                        XCTAssertGreaterThan(value, 0, key)
                    }
                }
            }
        }
    }

    /// Only one class among the validation rows (and, in a second run,
    /// among all rows): AUC has no positives or no negatives to rank. The
    /// metrics stay numbers, the file strict JSON, the run successful.
    func testOneClassGivesNoNaN() throws {
        let dir = try temporaryDirectory(for: self)
        // 20 rows, the last 5 (the validation split) all 1.
        let mixed = (0..<20).map { $0 >= 15 ? Float(1) : Float($0 % 2) }
        let allZero = [Float](repeating: 0, count: 20)
        for (name, labels) in [("mixed", mixed), ("zeros", allZero)] {
            let data = try DataSpec(rows: 20, labels: labels)
                .write(to: dir + "/" + name)
            let log = dir + "/\(name).jsonl"
            for ranks in [1, 2] {
                let arguments =
                    [
                        "train", "--data", data, "--epochs", "2",
                        "--batch-size", "6", "--validation-split", "0.25",
                        "--metrics", log,
                        "--save-weights", dir + "/\(name).safetensors",
                    ] + smallModelOptions()
                let result =
                    ranks == 1
                    ? try CLI.run(arguments)
                    : try CLI.runMPI(ranks: ranks, arguments)
                XCTAssertEqual(result.status, 0, result.transcript)
                XCTAssertFalse(
                    result.stdout.lowercased().contains("nan"),
                    result.transcript)
                let text = try String(contentsOfFile: log, encoding: .utf8)
                XCTAssertFalse(text.contains("null"), text)
                for epoch in try readMetrics(log) {
                    for (key, value) in epoch {
                        let number = try XCTUnwrap(
                            value as? Double, "\(name) \(key): \(value)")
                        XCTAssertTrue(number.isFinite, "\(name) \(key)")
                    }
                }
            }
            // evaluate on the same folder: strict JSON, numbers only.
            let evaluate = try CLI.run([
                "evaluate", "--weights", dir + "/\(name).safetensors",
                "--data", data, "--json",
            ])
            XCTAssertEqual(evaluate.status, 0, evaluate.transcript)
            let report = try XCTUnwrap(
                try JSONSerialization.jsonObject(
                    with: Data(evaluate.stdout.utf8)) as? [String: Any],
                evaluate.transcript)
            XCTAssertEqual(report.count, 7, evaluate.transcript)
            for (key, value) in report {
                let number = try XCTUnwrap(value as? Double, "\(name) \(key)")
                XCTAssertTrue(number.isFinite, "\(name) \(key)")
            }
        }
    }

    // MARK: --loss-weights

    /// With the aux loss weighted 0, aux_output gets no gradient, so its
    /// weights stay bit for bit what they were, while the rest trains; the
    /// reported loss is the main loss alone.
    func testZeroAuxWeightFreezesAuxOutput() throws {
        let tiny = try Fixtures.folder("tiny")
        let dir = try temporaryDirectory(for: self)
        let saved = dir + "/w.safetensors", log = dir + "/m.jsonl"
        let result = try CLI.run([
            "train", "--data", tiny,
            "--init-weights", tiny + "/weights.safetensors",
            "--loss-weights", "1.0,0.0", "--epochs", "3", "--batch-size", "2",
            "--save-weights", saved, "--metrics", log,
        ])
        XCTAssertEqual(result.status, 0, result.transcript)
        let before = try readTensors(tiny + "/weights.safetensors")
        let after = try readTensors(saved)
        XCTAssertEqual(before.keys.sorted(), after.keys.sorted())
        for name in before.keys.sorted() {
            let a = try XCTUnwrap(before[name]).floats().map(\.bitPattern)
            let b = try XCTUnwrap(after[name]).floats().map(\.bitPattern)
            if name.hasPrefix("aux_output/") {
                XCTAssertEqual(a, b, "\(name) changed")
            } else {
                XCTAssertNotEqual(a, b, "\(name) did not train")
            }
        }
        for epoch in try readMetrics(log) {
            let loss = try XCTUnwrap(epoch["loss"] as? Double)
            let main = try XCTUnwrap(epoch["main_output_loss"] as? Double)
            let aux = try XCTUnwrap(epoch["aux_output_loss"] as? Double)
            XCTAssertEqual(loss, main)
            XCTAssertGreaterThan(aux, 0)
        }
        // evaluate weighs the same way.
        let evaluate = try CLI.run([
            "evaluate", "--weights", saved, "--data", tiny, "--json",
            "--loss-weights", "1,0",
        ])
        XCTAssertEqual(evaluate.status, 0, evaluate.transcript)
        let report = try XCTUnwrap(
            try JSONSerialization.jsonObject(
                with: Data(evaluate.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(
            report["loss"] as? Double, report["main_output_loss"] as? Double)
    }
}
