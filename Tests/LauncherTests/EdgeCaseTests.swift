import Foundation
import Network
import XCTest

/// Unusual but valid inputs: the smallest shapes, huge batches, odd
/// paths, other file encodings of the same data, and the round trip of
/// saved weights through the other commands.
final class EdgeCaseTests: XCTestCase {
    /// One token per row (T = 1) and no aux features (A = 0): train, then
    /// predict and evaluate with the saved weights, on one and two ranks.
    func testSingleTokenRowsAndNoAuxFeatures() throws {
        for (t, a) in [(1, 3), (5, 0), (1, 0)] {
            let dir = try temporaryDirectory(for: self)
            let data = try DataSpec(rows: 9, sequenceLength: t, auxFeatures: a)
                .write(to: dir + "/data")
            var saved: [[String: HostArray]] = []
            for ranks in [1, 2] {
                let weights = dir + "/w\(ranks).safetensors"
                let arguments =
                    [
                        "train", "--data", data, "--epochs", "2",
                        "--batch-size",
                        "4", "--save-weights", weights,
                    ] + smallModelOptions()
                let result =
                    ranks == 1
                    ? try CLI.run(arguments)
                    : try CLI.runMPI(ranks: ranks, arguments)
                XCTAssertEqual(
                    result.status, 0, "T=\(t) A=\(a)\n" + result.transcript)
                guard result.status == 0 else { return }
                let tensors = try readTensors(weights)
                XCTAssertEqual(tensors["dense/kernel"]?.shape, [4 + a, 5])
                XCTAssertEqual(tensors["embedding/embeddings"]?.shape, [40, 6])
                saved.append(tensors)
            }
            XCTAssertLessThanOrEqual(
                maxAbsDifference(saved[0], saved[1]), 1e-5, "T=\(t) A=\(a)")
            let out = dir + "/p.npy"
            let predict = try CLI.run([
                "predict", "--weights", dir + "/w1.safetensors", "--data", data,
                "--out", out,
            ])
            XCTAssertEqual(predict.status, 0, predict.transcript)
            let probabilities = try NPY.read(contentsOf: out)
            XCTAssertEqual(probabilities.shape, [9, 2])
            XCTAssertTrue(
                probabilities.floats().allSatisfy { $0 > 0 && $0 < 1 },
                "\(probabilities.floats())")
            let evaluate = try CLI.run([
                "evaluate", "--weights", dir + "/w1.safetensors", "--data",
                data, "--json",
            ])
            XCTAssertEqual(evaluate.status, 0, evaluate.transcript)
            XCTAssertNoThrow(
                try JSONSerialization.jsonObject(
                    with: Data(evaluate.stdout.utf8)), evaluate.transcript)
        }
    }

    /// A batch far larger than the data is one step over all rows: the
    /// same weights, bit for bit, as a batch of exactly the row count.
    func testHugeBatchSizeIsOneFullBatch() throws {
        let dir = try temporaryDirectory(for: self)
        let data = try DataSpec(rows: 12).write(to: dir + "/data")
        var weights: [[String: HostArray]] = []
        for batch in ["12", "10000000"] {
            let saved = dir + "/w\(batch).safetensors"
            let result = try CLI.run(
                [
                    "train", "--data", data, "--epochs", "2", "--batch-size",
                    batch, "--save-weights", saved,
                ] + smallModelOptions())
            XCTAssertEqual(result.status, 0, result.transcript)
            XCTAssertEqual(
                result.stdoutLines.filter { $0.hasPrefix("1/1 - ") }.count, 2,
                result.transcript)
            weights.append(try readTensors(saved))
        }
        XCTAssertEqual(maxAbsDifference(weights[0], weights[1]), 0)
        let predict = try CLI.run([
            "predict", "--weights", dir + "/w12.safetensors", "--data", data,
            "--out", dir + "/p.npy", "--batch-size", "1000000",
        ])
        XCTAssertEqual(predict.status, 0, predict.transcript)
    }

    /// Folders and files with spaces, non-ASCII letters, a leading dash,
    /// and "=" (given as --name=value), relative to the working directory.
    func testUnusualPaths() throws {
        let dir = try temporaryDirectory(for: self)
        let odd = dir + "/-odd dïr=x"
        let data = try DataSpec(rows: 8).write(to: odd + "/dätä set")
        let result = try CLI.run(
            [
                "train", "--data", "-odd dïr=x/dätä set", "--epochs", "1",
                "--save-weights=-odd dïr=x/wéights out.safetensors",
                "--metrics", "-odd dïr=x/m étrics.jsonl",
            ] + smallModelOptions(), in: dir)
        XCTAssertEqual(result.status, 0, result.transcript)
        let saved = odd + "/wéights out.safetensors"
        XCTAssertEqual(try readTensors(saved).count, 14)
        XCTAssertEqual(try readMetrics(odd + "/m étrics.jsonl").count, 1)
        let predict = try CLI.run([
            "predict", "--weights=\(saved)", "--data=\(data)",
            "--out", odd + "/p r.npy",
        ])
        XCTAssertEqual(predict.status, 0, predict.transcript)
        XCTAssertEqual(
            try NPY.read(contentsOf: odd + "/p r.npy").shape, [8, 2])
    }

    /// int64 ids, float64 aux values, [N, 1] labels: the same numbers in
    /// other encodings train to bit-identical weights.
    func testOtherEncodingsOfTheSameData() throws {
        let dir = try temporaryDirectory(for: self)
        let plain = try DataSpec(rows: 10).write(to: dir + "/plain")
        let other = dir + "/other"
        try FileManager.default.createDirectory(
            atPath: other, withIntermediateDirectories: true)
        let ids = try NPY.read(contentsOf: plain + "/main_input.npy")
        let aux = try NPY.read(contentsOf: plain + "/aux_input.npy")
        let labels = try NPY.read(contentsOf: plain + "/labels.npy")
        try NPY.write(
            HostArray(
                shape: ids.shape, storage: .int64(try XCTUnwrap(ids.integers()))
            ),
            to: other + "/main_input.npy")
        try NPY.write(
            HostArray(shape: aux.shape, storage: .float64(aux.doubles())),
            to: other + "/aux_input.npy")
        try NPY.write(
            HostArray(shape: [10, 1], floats: labels.floats()),
            to: other + "/labels.npy")
        var weights: [[String: HostArray]] = []
        for folder in [plain, other] {
            let saved = folder + "/w.safetensors"
            let result = try CLI.run(
                [
                    "train", "--data", folder, "--epochs", "2",
                    "--batch-size", "4", "--save-weights", saved,
                ] + smallModelOptions())
            XCTAssertEqual(result.status, 0, result.transcript)
            weights.append(try readTensors(saved))
        }
        XCTAssertEqual(maxAbsDifference(weights[0], weights[1]), 0)
    }

    /// The same command twice gives the same bytes; another seed gives
    /// other weights.
    func testRunsAreDeterministicPerSeed() throws {
        let dir = try temporaryDirectory(for: self)
        let data = try DataSpec(rows: 10).write(to: dir + "/data")
        var files: [Data] = []
        for (run, seed) in [(0, "3"), (1, "3"), (2, "4")] {
            let saved = dir + "/w\(run).safetensors"
            let result = try CLI.run(
                [
                    "train", "--data", data, "--epochs", "2", "--batch-size",
                    "3", "--seed", seed, "--save-weights", saved,
                ] + smallModelOptions())
            XCTAssertEqual(result.status, 0, result.transcript)
            files.append(try Data(contentsOf: URL(fileURLWithPath: saved)))
        }
        XCTAssertEqual(files[0], files[1])
        XCTAssertNotEqual(files[0], files[2])
    }

    /// One validation row on three ranks: two ranks evaluate nothing, and
    /// the figures still match one rank's.
    func testValidationRowsFewerThanRanks() throws {
        let dir = try temporaryDirectory(for: self)
        let data = try DataSpec(rows: 10).write(to: dir + "/data")
        var logs: [[[String: Any]]] = []
        for ranks in [1, 3] {
            let log = dir + "/m\(ranks).jsonl"
            let result = try CLI.runMPI(
                ranks: ranks,
                [
                    "train", "--data", data, "--epochs", "2", "--batch-size",
                    "4", "--validation-split", "0.1", "--metrics", log,
                ] + smallModelOptions())
            XCTAssertEqual(result.status, 0, result.transcript)
            logs.append(try readMetrics(log))
        }
        XCTAssertEqual(logs[0].count, 2)
        for (a, b) in zip(logs[0], logs[1]) {
            XCTAssertEqual(a.keys.sorted(), b.keys.sorted())
            XCTAssertNotNil(a["val_main_output_loss"])
            for (key, value) in a {
                let x = try XCTUnwrap(value as? Double)
                let y = try XCTUnwrap(b[key] as? Double)
                XCTAssertLessThanOrEqual(abs(x - y), 1e-5, key)
            }
        }
    }

    /// Saved weights of a five-layer model carry every layer's name; the
    /// other commands read the sizes back from the file, and training can
    /// start from it.
    func testSavedWeightsRoundTrip() throws {
        let dir = try temporaryDirectory(for: self)
        let data = try DataSpec(rows: 10).write(to: dir + "/data")
        let first = dir + "/first.safetensors"
        let trained = try CLI.run(
            [
                "train", "--data", data, "--dense-layers", "5",
                "--save-weights", first,
            ] + smallModelOptions())
        XCTAssertEqual(trained.status, 0, trained.transcript)
        let tensors = try readTensors(first)
        for layer in ["dense", "dense_1", "dense_2", "dense_3", "dense_4"] {
            XCTAssertNotNil(tensors[layer + "/kernel"], layer)
            XCTAssertNotNil(tensors[layer + "/bias"], layer)
        }
        XCTAssertNil(tensors["dense_5/kernel"])
        XCTAssertEqual(tensors.count, 4 + 2 * 5 + 4)
        // A learning rate this small moves every weight by at most about
        // 1e-29 (RMSprop steps are about lr in size), so the resumed run
        // ends where it started, whatever --dense-layers says on its
        // command line.
        let second = dir + "/second.safetensors"
        let resumed = try CLI.run([
            "train", "--data", data, "--init-weights", first,
            "--dense-layers", "2", "--learning-rate", "1e-30",
            "--save-weights", second,
        ])
        XCTAssertEqual(resumed.status, 0, resumed.transcript)
        XCTAssertLessThanOrEqual(
            maxAbsDifference(tensors, try readTensors(second)), 1e-20)
        let evaluate = try CLI.run([
            "evaluate", "--weights", first, "--data", data, "--json",
        ])
        XCTAssertEqual(evaluate.status, 0, evaluate.transcript)
    }

    /// predict needs no labels.npy.
    func testPredictWithoutLabels() throws {
        let dir = try temporaryDirectory(for: self)
        let tiny = try Fixtures.folder("tiny")
        try FileManager.default.createDirectory(
            atPath: dir + "/inputs", withIntermediateDirectories: true)
        for file in ["main_input.npy", "aux_input.npy"] {
            try FileManager.default.copyItem(
                atPath: tiny + "/" + file, toPath: dir + "/inputs/" + file)
        }
        let result = try CLI.run([
            "predict", "--weights", tiny + "/weights.safetensors", "--data",
            dir + "/inputs", "--out", dir + "/p.npy",
        ])
        XCTAssertEqual(result.status, 0, result.transcript)
        XCTAssertEqual(try NPY.read(contentsOf: dir + "/p.npy").shape, [3, 2])
        let evaluate = try CLI.run([
            "evaluate", "--weights", tiny + "/weights.safetensors", "--data",
            dir + "/inputs",
        ])
        assertRejected(
            evaluate, distinctive: "labels.npy", mentions: [], status: 1,
            notWritten: nil)
    }
}
