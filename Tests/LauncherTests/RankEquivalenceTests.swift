import Foundation
import Network
import XCTest

/// The same training run on 1, 2 and 3 ranks ends with the same weights
/// and the same metrics: the data-parallel split changes only the order
/// of floating-point sums.
final class RankEquivalenceTests: XCTestCase {
    /// 25 rows, 20 for training: global batches of 7, 7 and 6, so 3 ranks
    /// get uneven shares and the last batch is partial.
    func testPartialLastBatch() throws {
        try checkEquivalence(rows: 25)
    }

    /// 28 rows, 22 for training: batches 7, 7, 7 and 1, so in the last
    /// step two of three ranks (one of two) have no rows at all.
    func testLastBatchSmallerThanRankCount() throws {
        try checkEquivalence(rows: 28)
    }

    /// The two ways of exchanging embedding rows, each forced for every
    /// step, give the same result as one rank.
    func testDenseAndSparseExchangeAgree() throws {
        try checkEquivalence(rows: 25, exchange: "dense")
        try checkEquivalence(rows: 25, exchange: "sparse")
    }

    /// A piece limit of 13 values per MPI call makes every collective of
    /// the step (rows of 6 floats, ids, the 300-odd small gradients) go
    /// in pieces or rounds, as calls beyond Int32.max values would. The
    /// exchange goes through messages here, as between machines (on one
    /// machine it uses shared memory, which has no pieces).
    func testCollectivesInSmallPiecesTrainAlike() throws {
        try checkEquivalence(
            rows: 25,
            environment: [
                "HEADLINE_COLLECTIVE_MAX_CHUNK": "13",
                "HEADLINE_SHARED_MEMORY": "0",
            ])
    }

    /// The sharded exchange through messages (as between machines) gives
    /// the result of one rank; on two ranks it gives the very bits of the
    /// exchange through shared memory, weights and metrics, since with two
    /// parts every sum is the same whichever way it is formed.
    func testMessagesAndSharedMemoryTrainAlike() throws {
        try checkEquivalence(
            rows: 28, environment: ["HEADLINE_SHARED_MEMORY": "0"])
        let dir = try temporaryDirectory(for: self)
        let labels = (0..<25).map { Float(($0 * 7 / 3) % 2) }
        try DataSpec(rows: 25, labels: labels).write(to: dir + "/data")
        var files: [String: [UInt8]] = [:]
        for shared in ["1", "0"] {
            let saved = dir + "/w\(shared).safetensors"
            let log = dir + "/m\(shared).jsonl"
            let result = try CLI.runMPI(
                ranks: 2,
                [
                    "train", "--data", dir + "/data", "--epochs", "3",
                    "--batch-size", "7", "--validation-split", "0.2",
                    "--seed", "11", "--learning-rate", "0.01",
                    "--save-weights", saved, "--metrics", log,
                ] + smallModelOptions(),
                environment: ["HEADLINE_SHARED_MEMORY": shared])
            XCTAssertEqual(result.status, 0, result.transcript)
            files["weights \(shared)"] = Array(
                try Data(contentsOf: URL(fileURLWithPath: saved)))
            files["metrics \(shared)"] = Array(
                try Data(contentsOf: URL(fileURLWithPath: log)))
        }
        XCTAssertEqual(files["weights 1"], files["weights 0"])
        XCTAssertEqual(files["metrics 1"], files["metrics 0"])
        XCTAssertGreaterThan(files["weights 1"]?.count ?? 0, 0)
    }

    /// With shared memory the ranks share out each other's embedding
    /// rows' product. Rank 1, slowed down in steps 2 and 3 just after it
    /// has put its rows up, gets its pieces computed by rank 0; the run
    /// still gives the bits of the exchange through messages, where every
    /// rank computes its own rows. 16 rows of 20 ids from 400 per rank
    /// give a few pieces of 64 rows each.
    func testASlowRanksRowsAreComputedByAnother() throws {
        let dir = try temporaryDirectory(for: self)
        let labels = (0..<96).map { Float(($0 * 7 / 3) % 2) }
        try DataSpec(
            rows: 96, sequenceLength: 20, vocabulary: 400, labels: labels
        ).write(to: dir + "/data")
        var weights: [String: Data] = [:]
        for (name, environment) in [
            ("shared", ["HEADLINE_TEST_FAIL": "1:2:slow,1:3:slow"]),
            ("messages", ["HEADLINE_SHARED_MEMORY": "0"]),
        ] {
            let saved = dir + "/\(name).safetensors"
            let result = try CLI.runMPI(
                ranks: 2,
                [
                    "train", "--data", dir + "/data", "--epochs", "1",
                    "--batch-size", "32", "--validation-split", "0",
                    "--seed", "5", "--learning-rate", "0.01",
                    "--timing-skip", "0", "--save-weights", saved,
                ] + smallModelOptions(vocabulary: 400),
                environment: environment)
            XCTAssertEqual(result.status, 0, result.transcript)
            weights[name] = try Data(contentsOf: URL(fileURLWithPath: saved))
            let line = result.transcript.split(separator: "\n").first {
                $0.contains("embedding rows' product")
            }
            if name == "messages" {
                XCTAssertNil(line, result.transcript)
                continue
            }
            // "… N of M pieces computed by another rank than their own"
            let words = line.map { $0.split(separator: " ") } ?? []
            let of = words.firstIndex(of: "of")
            let others = of.flatMap { Int(words[$0 - 1]) }
            let all = of.flatMap { Int(words[$0 + 1]) }
            XCTAssertNotNil(others, result.transcript)
            XCTAssertGreaterThanOrEqual(others ?? 0, 2, result.transcript)
            XCTAssertGreaterThan(all ?? 0, 6, result.transcript)
            // The phases say where the time went: rank 1's 300 ms pauses,
            // in two of the three steps, fall in its rows' product.
            let phases = phaseLines(result.transcript)
            XCTAssertEqual(phases.count, 2, result.transcript)
            XCTAssertGreaterThanOrEqual(
                phases[1]?["rows' product"] ?? 0, 190, result.transcript)
            XCTAssertLessThan(
                phases[0]?["rows' product"] ?? .infinity, 150,
                result.transcript)
        }
        XCTAssertEqual(weights["shared"], weights["messages"])
        XCTAssertGreaterThan(weights["shared"]?.count ?? 0, 0)
    }

    /// The `--timing-skip` lines "phases, ms/step (rank R): NAME X, ...
    /// = TOTAL", as each rank's phases by name.
    private func phaseLines(_ transcript: String) -> [Int: [String: Double]] {
        var found: [Int: [String: Double]] = [:]
        for line in transcript.split(separator: "\n") {
            guard let open = line.range(of: "phases, ms/step (rank "),
                let close = line.range(of: "): ")
            else { continue }
            guard let rank = Int(line[open.upperBound..<close.lowerBound])
            else { continue }
            let body = line[close.upperBound...].split(separator: "=")[0]
            var phases: [String: Double] = [:]
            for part in body.split(separator: ",") {
                let words = part.split(separator: " ")
                guard let value = words.last.flatMap({ Double($0) }) else {
                    continue
                }
                phases[words.dropLast().joined(separator: " ")] = value
            }
            found[rank] = phases
        }
        return found
    }

    /// A machine whose shared-memory file system is too small for the
    /// exchange's segments (a container's small /dev/shm, made here with
    /// a private mount namespace and a 9 MiB tmpfs): the ranks agree to
    /// exchange through messages and give the bits of a run told to.
    /// (Without that check OpenMPI refuses the shared window and the run
    /// ends with an error.) The table's width and length make the
    /// segments some 33 MB; the LSTM stays small for a debug build.
    func testTooLittleSharedMemoryFallsBackToMessages() throws {
        let dir = try temporaryDirectory(for: self)
        let labels = (0..<64).map { Float(($0 * 7 / 3) % 2) }
        try DataSpec(
            rows: 64, sequenceLength: 100, vocabulary: 10_000, labels: labels
        ).write(to: dir + "/data")
        let trainer = try CLI.executable()
        let mpirun = try CLI.mpirun()
        func arguments(_ saved: String) -> [String] {
            [
                "train", "--data", dir + "/data", "--epochs", "1",
                "--batch-size", "64", "--seed", "3", "--save-weights", saved,
                "--vocab-size", "10000", "--embedding-dim", "512",
                "--lstm-units", "4", "--dense-units", "5",
            ]
        }
        let small = dir + "/small.safetensors"
        let command =
            ([
                "mount -t tmpfs -o size=9m tmpfs /dev/shm && exec", mpirun,
                "--oversubscribe", "--bind-to", "none", "-np", "2", trainer,
            ] + arguments(small)).joined(separator: " ")
        // As root a mount namespace is enough; otherwise a user namespace
        // maps this user to root inside it.
        let result = try CLI.runProgram(
            "/usr/bin/unshare",
            (getuid() == 0 ? ["-m"] : ["-r", "-m"]) + ["sh", "-c", command])
        XCTAssertEqual(result.status, 0, result.transcript)
        let plain = dir + "/messages.safetensors"
        let messages = try CLI.runMPI(
            ranks: 2, arguments(plain),
            environment: ["HEADLINE_SHARED_MEMORY": "0"])
        XCTAssertEqual(messages.status, 0, messages.transcript)
        let a = try Data(contentsOf: URL(fileURLWithPath: small))
        let b = try Data(contentsOf: URL(fileURLWithPath: plain))
        XCTAssertEqual(a, b)
        XCTAssertGreaterThan(a.count, 20_000_000)
    }

    private func checkEquivalence(
        rows: Int, exchange: String = "auto",
        environment: [String: String] = [:],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let dir = try temporaryDirectory(for: self)
        // Labels chosen so both classes are in the training and the
        // validation rows, which keeps every AUC meaningful.
        let labels = (0..<rows).map { Float(($0 * 7 / 3) % 2) }
        try DataSpec(rows: rows, labels: labels).write(to: dir + "/data")
        var weights: [Int: [String: HostArray]] = [:]
        var metrics: [Int: [[String: Any]]] = [:]
        for ranks in 1...3 {
            let saved = dir + "/w\(ranks).safetensors"
            let log = dir + "/m\(ranks).jsonl"
            // No --init-weights: rank 0 draws the initial weights from the
            // seed and must broadcast them; shuffling on.
            let result = try CLI.runMPI(
                ranks: ranks,
                [
                    "train", "--data", dir + "/data", "--epochs", "3",
                    "--batch-size", "7", "--validation-split", "0.2",
                    "--seed", "11", "--learning-rate", "0.01",
                    "--save-weights", saved, "--metrics", log,
                    "--gradient-exchange", exchange,
                ] + smallModelOptions(), environment: environment,
                file: file, line: line)
            XCTAssertEqual(
                result.status, 0, result.transcript, file: file, line: line)
            XCTAssertFalse(result.signaled, file: file, line: line)
            guard result.status == 0 else { return }
            weights[ranks] = try readTensors(saved)
            metrics[ranks] = try readMetrics(log, file: file, line: line)
        }
        let reference = try XCTUnwrap(weights[1])
        let referenceMetrics = try XCTUnwrap(metrics[1])
        XCTAssertEqual(referenceMetrics.count, 3, file: file, line: line)
        for ranks in 2...3 {
            let other = try XCTUnwrap(weights[ranks])
            let diff = maxAbsDifference(
                reference, other, file: file, line: line)
            XCTAssertLessThanOrEqual(
                diff, 1e-5, "weights on \(ranks) ranks vs 1 rank",
                file: file, line: line)
            let epochs = try XCTUnwrap(metrics[ranks])
            XCTAssertEqual(epochs.count, 3, file: file, line: line)
            for (epoch, (a, b)) in zip(referenceMetrics, epochs).enumerated() {
                XCTAssertEqual(
                    a.keys.sorted(), b.keys.sorted(), file: file, line: line)
                XCTAssertNotNil(a["val_loss"], file: file, line: line)
                for (key, value) in a {
                    let x = try XCTUnwrap(value as? Double, key)
                    let y = try XCTUnwrap(b[key] as? Double, key)
                    XCTAssertLessThanOrEqual(
                        abs(x - y), 1e-5,
                        "epoch \(epoch + 1) \(key) on \(ranks) ranks: \(y), "
                            + "on 1 rank: \(x)", file: file, line: line)
                }
            }
        }
        // Training did move the weights away from where any run started,
        // and the runs started from the seed's weights, not from zeros: a
        // rank that missed the broadcast would have diverged above.
        XCTAssertNotEqual(
            referenceMetrics.first?["loss"] as? Double,
            referenceMetrics.last?["loss"] as? Double, file: file, line: line)
    }
}
