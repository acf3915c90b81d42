import Foundation
import Network
import XCTest

/// Each bad input ends the run with a non-zero status, no crash, its
/// message printed exactly once (also with two ranks under mpirun, where
/// every rank must still exit), naming what it must name, and no weights
/// file written.
final class BadInputTests: XCTestCase {
    // MARK: Token ids

    func testTokenIdEqualToVocabularySize() throws {
        let data = try folder { spec in spec }
        try rewriteIds(in: data) { ids in ids[3 * 5 + 2] = 40 }
        try checkRejected(
            data: data, distinctive: "holds token id 40,",
            mentions: ["main_input.npy", "row 3", "column 2", "V = 40"],
            ranks: [1, 2])
    }

    func testNegativeTokenId() throws {
        let data = try folder { spec in spec }
        try rewriteIds(in: data) { ids in ids[6 * 5 + 4] = -1 }
        try checkRejected(
            data: data, distinctive: "holds token id -1,",
            mentions: ["main_input.npy", "row 6", "column 4", "V = 40"],
            ranks: [1, 2])
    }

    /// An id beyond Int32 in an int64 file: rejected, not wrapped.
    func testInt64TokenIdBeyondInt32() throws {
        let data = try folder { spec in spec }
        let ids = (0..<50).map { Int64($0 % 40) }
        var wide = ids
        wide[7] = 1 << 40
        try NPY.write(
            HostArray(shape: [10, 5], storage: .int64(wide)),
            to: data + "/main_input.npy")
        try checkRejected(
            data: data, distinctive: "holds token id \(Int64(1) << 40),",
            mentions: ["main_input.npy", "row 1", "column 2"], ranks: [1])
    }

    // MARK: Shapes and types

    func testAuxRowCountDisagrees() throws {
        let data = try folder { spec in spec }
        try NPY.write(
            HostArray(shape: [9, 3], floats: Array(repeating: 0.5, count: 27)),
            to: data + "/aux_input.npy")
        try checkRejected(
            data: data, distinctive: "has 9 rows but main_input.npy has 10",
            mentions: ["aux_input.npy"], ranks: [1, 2])
    }

    func testLabelRowCountDisagrees() throws {
        let data = try folder { spec in spec }
        try NPY.write(
            HostArray(shape: [11], floats: Array(repeating: 1, count: 11)),
            to: data + "/labels.npy")
        try checkRejected(
            data: data, distinctive: "has 11 rows but main_input.npy has 10",
            mentions: ["labels.npy"], ranks: [1])
    }

    func testFloatTokenIds() throws {
        let data = try folder { spec in spec }
        try NPY.write(
            HostArray(shape: [10, 5], floats: Array(repeating: 1, count: 50)),
            to: data + "/main_input.npy")
        try checkRejected(
            data: data, distinctive: "expected integer token ids",
            mentions: ["main_input.npy", "float32"], ranks: [1, 2])
    }

    func testOneDimensionalTokenIds() throws {
        let data = try folder { spec in spec }
        try NPY.write(
            HostArray(shape: [10], int32s: Array(repeating: 1, count: 10)),
            to: data + "/main_input.npy")
        try checkRejected(
            data: data, distinctive: "expected a 2-D array [N, T]",
            mentions: ["main_input.npy", "[10]"], ranks: [1])
    }

    func testLabelShapeWithTwoColumns() throws {
        let data = try folder { spec in spec }
        try NPY.write(
            HostArray(shape: [10, 2], floats: Array(repeating: 1, count: 20)),
            to: data + "/labels.npy")
        try checkRejected(
            data: data, distinctive: "expected shape [N] or [N, 1]",
            mentions: ["labels.npy", "[10, 2]"], ranks: [1])
    }

    // MARK: Values

    func testLabelAboveOne() throws {
        var labels = [Float](repeating: 0, count: 10)
        labels[4] = 1.5
        let data = try folder { spec in
            var spec = spec
            spec.labels = labels
            return spec
        }
        try checkRejected(
            data: data, distinctive: "row 4 (0-based) is 1.5",
            mentions: ["labels.npy", "[0, 1]"], ranks: [1])
    }

    func testNegativeLabel() throws {
        var labels = [Float](repeating: 1, count: 10)
        labels[0] = -0.25
        let data = try folder { spec in
            var spec = spec
            spec.labels = labels
            return spec
        }
        try checkRejected(
            data: data, distinctive: "row 0 (0-based) is -0.25",
            mentions: ["labels.npy", "[0, 1]"], ranks: [1])
    }

    func testNaNLabel() throws {
        var labels = [Float](repeating: 1, count: 10)
        labels[8] = .nan
        let data = try folder { spec in
            var spec = spec
            spec.labels = labels
            return spec
        }
        try checkRejected(
            data: data, distinctive: "row 8 (0-based) is nan",
            mentions: ["labels.npy", "[0, 1]"], ranks: [1, 2])
    }

    func testNaNAuxValue() throws {
        let data = try folder { spec in spec }
        try rewriteAux(in: data) { aux in aux[2 * 3 + 1] = .nan }
        try checkRejected(
            data: data, distinctive: "row 2, column 1 (0-based) is nan",
            mentions: ["aux_input.npy", "finite"], ranks: [1, 2])
    }

    func testInfiniteAuxValue() throws {
        let data = try folder { spec in spec }
        try rewriteAux(in: data) { aux in aux[9 * 3 + 2] = -.infinity }
        try checkRejected(
            data: data, distinctive: "row 9, column 2 (0-based) is -inf",
            mentions: ["aux_input.npy", "finite"], ranks: [1])
    }

    /// Sizes whose weights cannot fit in memory (or overflow the count)
    /// are refused before anything is allocated, not trapped on.
    func testModelTooLargeForMemory() throws {
        let dir = try temporaryDirectory(for: self)
        let data = try DataSpec(rows: 8).write(to: dir + "/data")
        try checkRejected(
            data: data,
            extra: [
                "--vocab-size", "100000000", "--embedding-dim", "100000000",
            ],
            withModelSizes: false, distinctive: "of memory holds at most",
            mentions: ["V=100000000", "E=100000000"], ranks: [1, 2])
    }

    func testEmptyDataSet() throws {
        let dir = try temporaryDirectory(for: self)
        let data = try DataSpec(rows: 0).write(to: dir + "/data")
        try checkRejected(
            data: data, distinctive: "the data set is empty (0 rows)",
            mentions: ["main_input.npy"], ranks: [1, 2])
    }

    func testMissingInputFile() throws {
        let data = try folder { spec in spec }
        try FileManager.default.removeItem(atPath: data + "/aux_input.npy")
        try checkRejected(
            data: data, distinctive: "aux_input.npy: cannot open",
            mentions: [data], ranks: [1])
    }

    func testTruncatedInputFile() throws {
        let data = try folder { spec in spec }
        let path = data + "/main_input.npy"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count - 7).write(to: URL(fileURLWithPath: path))
        try checkRejected(
            data: data, distinctive: "main_input.npy:", mentions: [],
            ranks: [1])
    }

    func testDataIsNotAFolder() throws {
        let data = try folder { spec in spec }
        try checkRejected(
            data: data + "/labels.npy", distinctive: "not a folder",
            mentions: ["labels.npy"], ranks: [1])
    }

    /// Validation rows taking everything: nothing left to train on.
    func testValidationSplitLeavingNoTrainingRows() throws {
        let data = try folder { spec in spec }
        try checkRejected(
            data: data, extra: ["--validation-split", "0.95"],
            distinctive: "leaves no training rows of 10", mentions: [],
            ranks: [1, 2])
    }

    // MARK: Weights files

    func testInitWeightsMissingTensor() throws {
        try checkBadWeights(
            edit: { tensors in
                tensors.removeAll { $0.name == "lstm/lstm_cell/bias" }
            },
            distinctive: "missing tensor 'lstm/lstm_cell/bias'", ranks: [1, 2])
    }

    /// A hidden dense layer's kernel missing (its bias still there) is a
    /// missing tensor too, not a model with fewer layers.
    func testInitWeightsMissingDenseKernel() throws {
        try checkBadWeights(
            edit: { tensors in
                tensors.removeAll { $0.name == "dense_1/kernel" }
            },
            distinctive: "missing tensor 'dense_1/kernel'")
    }

    func testInitWeightsExtraTensor() throws {
        try checkBadWeights(
            edit: { tensors in
                tensors.append(
                    (
                        name: "surplus/kernel",
                        array: HostArray(shape: [2], floats: [1, 2])
                    ))
            },
            distinctive: "unexpected tensor(s) 'surplus/kernel'")
    }

    func testInitWeightsMisshapenTensor() throws {
        try checkBadWeights(
            edit: { tensors in
                let k = tensors.firstIndex { $0.name == "dense_2/kernel" }!
                tensors[k].array = HostArray(
                    shape: [6, 5], floats: Array(repeating: 0.1, count: 30))
            },
            distinctive: "tensor 'dense_2/kernel' has shape [6, 5], "
                + "expected [6, 6]")
    }

    func testInitWeightsNonFiniteValue() throws {
        try checkBadWeights(
            edit: { tensors in
                let k = tensors.firstIndex { $0.name == "main_output/bias" }!
                tensors[k].array = HostArray(shape: [1], floats: [.infinity])
            },
            distinctive: "tensor 'main_output/bias' element 0 is inf")
    }

    /// Weights for 5 aux features, data with 3.
    func testInitWeightsForOtherSizesThanTheData() throws {
        let data = try folder { spec in spec }
        let tiny = try Fixtures.folder("tiny")
        try checkRejected(
            data: data,
            extra: ["--init-weights", tiny + "/weights.safetensors"],
            withModelSizes: false,
            distinctive: "has 3 features per row, but the weights in",
            mentions: ["aux_input.npy", "weights.safetensors", "expect 5"],
            ranks: [1, 2])
    }

    /// Weights with a vocabulary of 50; ids up to 59 in the data.
    func testInitWeightsWithSmallerVocabularyThanTheData() throws {
        let tiny = try Fixtures.folder("tiny")
        let data = try folder { spec in
            var spec = spec
            spec.vocabulary = 60
            spec.auxFeatures = 5
            return spec
        }
        let ids = try NPY.read(contentsOf: data + "/main_input.npy")
        let first = try XCTUnwrap(
            ids.integers()?.enumerated().first { $0.element >= 50 })
        try checkRejected(
            data: data,
            extra: ["--init-weights", tiny + "/weights.safetensors"],
            withModelSizes: false,
            distinctive: "holds token id \(first.element),",
            mentions: [
                "row \(first.offset / 5)", "column \(first.offset % 5)",
                "V = 50",
            ], ranks: [1])
    }

    func testPredictWeightsMissingTensor() throws {
        let tiny = try Fixtures.folder("tiny")
        let dir = try temporaryDirectory(for: self)
        var tensors = try SafeTensors.read(
            contentsOf: tiny + "/weights.safetensors")
        tensors.removeAll { $0.name == "aux_output/kernel" }
        try SafeTensors.write(tensors, to: dir + "/bad.safetensors")
        for ranks in [1, 2] {
            let out = dir + "/p\(ranks).npy"
            let arguments = [
                "predict", "--weights", dir + "/bad.safetensors",
                "--data", tiny, "--out", out,
            ]
            let result =
                ranks == 1
                ? try CLI.run(arguments)
                : try CLI.runMPI(ranks: ranks, arguments)
            assertRejected(
                result, distinctive: "missing tensor 'aux_output/kernel'",
                mentions: ["bad.safetensors"], notWritten: out)
        }
    }

    // MARK: Usage errors

    func testBatchSmallerThanRankCount() throws {
        let data = try folder { spec in spec }
        let dir = (data as NSString).deletingLastPathComponent
        let saved = dir + "/w.safetensors"
        let result = try CLI.runMPI(
            ranks: 2,
            [
                "train", "--data", data, "--batch-size", "1", "--save-weights",
                saved,
            ] + smallModelOptions())
        assertRejected(
            result, distinctive: "--batch-size 1 is smaller than the 2 ranks",
            mentions: [], status: 2, notWritten: saved)
    }

    func testUnknownOption() throws {
        let data = try folder { spec in spec }
        try checkUsageError(
            ["train", "--data", data, "--epoch", "3"],
            distinctive: "unknown option '--epoch'")
    }

    func testMissingOptionValue() throws {
        let data = try folder { spec in spec }
        try checkUsageError(
            ["train", "--data", data, "--epochs"],
            distinctive: "option '--epochs' needs a value")
    }

    func testOptionGivenTwice() throws {
        let data = try folder { spec in spec }
        try checkUsageError(
            ["train", "--data", data, "--epochs", "2", "--epochs=3"],
            distinctive: "option '--epochs' given twice")
    }

    func testBadOptionValues() throws {
        let data = try folder { spec in spec }
        let cases: [([String], String)] = [
            (["--epochs", "0"], "option '--epochs' expects an integer"),
            (
                ["--batch-size", "-3"],
                "option '--batch-size' expects an integer"
            ),
            (["--loss-weights", "1"], "option '--loss-weights' expects 2"),
            (["--loss-weights", "1,nan"], "option '--loss-weights' expects 2"),
            (["--loss-weights", "-1,0"], "expects weights >= 0"),
            (["--validation-split", "1"], "expects a fraction in [0, 1)"),
            (["--learning-rate", "inf"], "expects a positive number"),
            (["--no-shuffle=yes"], "option '--no-shuffle' takes no value"),
        ]
        for (options, message) in cases {
            let result = try CLI.run(["train", "--data", data] + options)
            assertRejected(
                result, distinctive: message, mentions: [], status: 2,
                notWritten: nil)
        }
    }

    func testUnknownCommand() throws {
        let result = try CLI.run(["trian", "--data", "x"])
        assertRejected(
            result, distinctive: "unknown command 'trian'", mentions: [],
            status: 2, notWritten: nil)
        let none = try CLI.run([])
        assertRejected(
            none, distinctive: "no command given", mentions: [], status: 2,
            notWritten: nil)
    }

    // MARK: Output paths

    /// A --save-weights path in a folder that does not exist: the run ends
    /// with the path named, on one rank and on two, before it trains.
    func testSaveWeightsIntoMissingFolder() throws {
        let data = try folder { spec in spec }
        let dir = (data as NSString).deletingLastPathComponent
        let target = dir + "/no-such-folder/w.safetensors"
        for ranks in [1, 2] {
            let arguments =
                [
                    "train", "--data", data, "--save-weights", target,
                ] + smallModelOptions()
            let result =
                ranks == 1
                ? try CLI.run(arguments)
                : try CLI.runMPI(ranks: ranks, arguments)
            assertRejected(
                result, distinctive: target, mentions: [],
                notWritten: target)
            XCTAssertFalse(
                result.stdout.contains("Epoch 1/"), result.transcript)
        }
    }

    func testSaveWeightsOntoAFolder() throws {
        let data = try folder { spec in spec }
        let dir = (data as NSString).deletingLastPathComponent
        let target = dir + "/a-folder"
        try FileManager.default.createDirectory(
            atPath: target, withIntermediateDirectories: false)
        let result = try CLI.run(
            ["train", "--data", data, "--save-weights", target]
                + smallModelOptions())
        assertRejected(
            result, distinctive: target, mentions: [], notWritten: nil)
        XCTAssertFalse(result.stdout.contains("Epoch 1/"), result.transcript)
        let contents = try FileManager.default.contentsOfDirectory(
            atPath: target)
        XCTAssertEqual(contents, [], "left behind: \(contents)")
    }

    func testMetricsIntoMissingFolder() throws {
        let data = try folder { spec in spec }
        let dir = (data as NSString).deletingLastPathComponent
        let target = dir + "/no-such-folder/m.jsonl"
        let saved = dir + "/w.safetensors"
        for ranks in [1, 2] {
            let arguments =
                [
                    "train", "--data", data, "--metrics", target,
                    "--save-weights", saved,
                ] + smallModelOptions()
            let result =
                ranks == 1
                ? try CLI.run(arguments)
                : try CLI.runMPI(ranks: ranks, arguments)
            assertRejected(
                result, distinctive: target, mentions: [],
                notWritten: saved)
            XCTAssertFalse(
                result.stdout.contains("Epoch 1/"), result.transcript)
        }
    }

    func testPredictOutIntoMissingFolder() throws {
        let tiny = try Fixtures.folder("tiny")
        let dir = try temporaryDirectory(for: self)
        let target = dir + "/no-such-folder/p.npy"
        for ranks in [1, 2] {
            let arguments = [
                "predict", "--weights", tiny + "/weights.safetensors",
                "--data", tiny, "--out", target,
            ]
            let result =
                ranks == 1
                ? try CLI.run(arguments)
                : try CLI.runMPI(ranks: ranks, arguments)
            assertRejected(
                result, distinctive: target, mentions: [],
                notWritten: target)
        }
    }

    // MARK: Training that cannot go on

    /// A learning rate so large that the loss overflows: every rank sees
    /// the same reduced loss, and the message comes once.
    func testNonFiniteLossIsReportedOnce() throws {
        let data = try folder { spec in spec }
        try rewriteAux(in: data) { aux in
            for k in aux.indices { aux[k] *= 1e30 }
        }
        for ranks in [1, 2] {
            let dir = (data as NSString).deletingLastPathComponent
            let saved = dir + "/w\(ranks).safetensors"
            let arguments =
                [
                    "train", "--data", data, "--learning-rate", "1e30",
                    "--epochs", "4", "--save-weights", saved,
                ] + smallModelOptions()
            let result =
                ranks == 1
                ? try CLI.run(arguments)
                : try CLI.runMPI(ranks: ranks, arguments)
            assertRejected(
                result, distinctive: "the loss became non-finite",
                mentions: ["--learning-rate"], status: 1, notWritten: saved)
        }
    }

    // MARK: Helpers

    /// A valid folder of 10 rows (T = 5, A = 3, ids < 40), as `edit`
    /// changes the spec.
    private func folder(_ edit: (DataSpec) -> DataSpec) throws -> String {
        let dir = try temporaryDirectory(for: self)
        return try edit(DataSpec(rows: 10)).write(to: dir + "/data")
    }

    private func rewriteIds(in folder: String, _ edit: (inout [Int32]) -> Void)
        throws
    {
        let path = folder + "/main_input.npy"
        let array = try NPY.read(contentsOf: path)
        var ids = try XCTUnwrap(array.integers()).map { Int32($0) }
        edit(&ids)
        try NPY.write(HostArray(shape: array.shape, int32s: ids), to: path)
    }

    private func rewriteAux(in folder: String, _ edit: (inout [Float]) -> Void)
        throws
    {
        let path = folder + "/aux_input.npy"
        let array = try NPY.read(contentsOf: path)
        var aux = array.floats()
        edit(&aux)
        try NPY.write(HostArray(shape: array.shape, floats: aux), to: path)
    }

    /// `train` on `data` (with `extra` options) fails on each rank count
    /// in `ranks` as `assertRejected` describes.
    private func checkRejected(
        data: String, extra: [String] = [], withModelSizes: Bool = true,
        distinctive: String, mentions: [String], ranks: [Int],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let dir = try temporaryDirectory(for: self)
        for count in ranks {
            let saved = dir + "/w\(count).safetensors"
            let arguments =
                ["train", "--data", data, "--save-weights", saved]
                + extra + (withModelSizes ? smallModelOptions() : [])
            let result =
                count == 1
                ? try CLI.run(arguments, file: file, line: line)
                : try CLI.runMPI(
                    ranks: count, arguments, file: file, line: line)
            assertRejected(
                result, distinctive: distinctive, mentions: mentions,
                notWritten: saved, file: file, line: line)
        }
    }

    /// `train --init-weights` with the tiny fixture's weights as `edit`
    /// changes them, on the tiny fixture's data.
    private func checkBadWeights(
        edit: (inout [(name: String, array: HostArray)]) -> Void,
        distinctive: String, ranks: [Int] = [1],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let tiny = try Fixtures.folder("tiny")
        let dir = try temporaryDirectory(for: self)
        var tensors = try SafeTensors.read(
            contentsOf: tiny + "/weights.safetensors")
        edit(&tensors)
        let weights = dir + "/edited.safetensors"
        try SafeTensors.write(tensors, to: weights)
        try checkRejected(
            data: tiny, extra: ["--init-weights", weights],
            withModelSizes: false, distinctive: distinctive,
            mentions: ["edited.safetensors"], ranks: ranks,
            file: file, line: line)
    }

    /// A usage error: status 2, printed once, alone and on two ranks.
    private func checkUsageError(
        _ arguments: [String], distinctive: String,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        for ranks in [1, 2] {
            let result =
                ranks == 1
                ? try CLI.run(arguments, file: file, line: line)
                : try CLI.runMPI(
                    ranks: ranks, arguments, file: file, line: line)
            assertRejected(
                result, distinctive: distinctive, mentions: [], status: 2,
                notWritten: nil, file: file, line: line)
            XCTAssertEqual(
                occurrences(of: "--help'", in: result.stderr), 1,
                "no single pointer to --help\n" + result.transcript,
                file: file, line: line)
        }
    }
}

/// The run failed cleanly: it ended in time, by exit (not by a signal),
/// with a non-zero status below 128 (`status` when given); the message
/// `distinctive` is on standard error exactly once in all the output, with
/// every one of `mentions` in it; and `notWritten` does not exist.
func assertRejected(
    _ result: CLIResult, distinctive: String, mentions: [String],
    status: Int32? = nil, notWritten: String?,
    file: StaticString = #filePath, line: UInt = #line
) {
    let transcript = result.transcript
    XCTAssertFalse(result.timedOut, transcript, file: file, line: line)
    XCTAssertFalse(
        result.signaled, "ended by a signal\n" + transcript,
        file: file, line: line)
    XCTAssertNotEqual(result.status, 0, transcript, file: file, line: line)
    XCTAssertLessThan(result.status, 128, transcript, file: file, line: line)
    if let status {
        XCTAssertEqual(
            result.status, status, transcript, file: file, line: line)
    }
    XCTAssertEqual(
        occurrences(of: distinctive, in: result.output), 1,
        "\"\(distinctive)\" should appear exactly once\n" + transcript,
        file: file, line: line)
    XCTAssertTrue(
        result.stderr.contains(distinctive),
        "\"\(distinctive)\" is not on standard error\n" + transcript,
        file: file, line: line)
    // The line that carries the message names everything it must.
    let messageLine =
        result.stderr.split(separator: "\n")
        .first { $0.contains(distinctive) }.map(String.init) ?? ""
    for mention in mentions {
        XCTAssertTrue(
            messageLine.contains(mention),
            "the message does not name \"\(mention)\"\n" + transcript,
            file: file, line: line)
    }
    if let notWritten {
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: notWritten),
            "\(notWritten) was written\n" + transcript, file: file, line: line)
    }
}
