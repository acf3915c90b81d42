import Foundation
import Network
import XCTest

/// One small training job that the resume and failure tests run again and
/// again: 30 rows, the last 6 held out, global batch 5, so an epoch is 5
/// steps (the last of 4 rows) and 3 epochs are 15 steps. Every run gets
/// its own checkpoint folder, weights and metrics file under `dir`.
struct RobustnessJob {
    let dir: String
    let data: String
    var epochs = 3
    static let stepsPerEpoch = 5

    init(test: XCTestCase, epochs: Int = 3) throws {
        dir = try temporaryDirectory(for: test, name: "robustness")
        data = dir + "/data"
        self.epochs = epochs
        let labels = (0..<30).map { Float(($0 * 7 / 3) % 2) }
        try DataSpec(rows: 30, labels: labels).write(to: data)
    }

    var totalSteps: Int { epochs * RobustnessJob.stepsPerEpoch }

    /// The paths of run `name`.
    func checkpoints(_ name: String) -> String { dir + "/\(name)-ckpt" }
    func weights(_ name: String) -> String { dir + "/\(name).safetensors" }
    func metrics(_ name: String) -> String { dir + "/\(name).jsonl" }

    /// `train` for run `name`; `checkpoints` false leaves the folder out.
    func arguments(
        _ name: String, checkpoints: Bool = true, extra: [String] = []
    ) -> [String] {
        [
            "train", "--data", data, "--epochs", "\(epochs)",
            "--batch-size", "5", "--validation-split", "0.2", "--seed", "11",
            "--learning-rate", "0.01", "--save-weights", weights(name),
            "--metrics", metrics(name),
        ] + (checkpoints ? ["--checkpoint-dir", self.checkpoints(name)] : [])
            + smallModelOptions() + extra
    }

    /// Runs `arguments` on `ranks` ranks (a plain process for 1).
    func run(
        ranks: Int, _ arguments: [String],
        environment: [String: String] = [:],
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> CLIResult {
        ranks == 1
            ? try CLI.run(
                arguments, environment: environment, file: file, line: line)
            : try CLI.runMPI(
                ranks: ranks, arguments, environment: environment, file: file,
                line: line)
    }

    func start(
        ranks: Int, _ arguments: [String],
        environment: [String: String] = [:]
    ) throws -> RunningCLI {
        ranks == 1
            ? try CLI.start(arguments, environment: environment)
            : try CLI.startMPI(
                ranks: ranks, arguments, environment: environment)
    }

    /// The run never interrupted, on `ranks` ranks, as run `name`: its
    /// weights and metrics files, which name no path, so one run per rank
    /// and epoch count serves every test (mpirun takes a second to start).
    func reference(
        ranks: Int, name: String = "reference",
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> (weights: Data, metrics: Data) {
        let key = "\(ranks) ranks, \(epochs) epochs"
        if let bytes = RobustnessJob.references[key] {
            let known = (
                weights: Data(bytes.weights), metrics: Data(bytes.metrics)
            )
            // Still written here: tests read the files by path.
            try known.weights.write(to: URL(fileURLWithPath: weights(name)))
            try known.metrics.write(to: URL(fileURLWithPath: metrics(name)))
            return known
        }
        let result = try run(
            ranks: ranks, arguments(name), file: file, line: line)
        XCTAssertEqual(
            result.status, 0, result.transcript, file: file, line: line)
        let made = try outputs(name)
        RobustnessJob.references[key] = (
            Array(made.weights), Array(made.metrics)
        )
        return made
    }

    /// Kept as byte arrays, not Data: a Data still alive at exit is
    /// reported by LeakSanitizer as a leak, because Swift stores its
    /// storage pointer with enum tag bits set, which the leak scan does
    /// not recognise as a pointer (docs/fuzzing.md has the 8-line repro).
    private static var references:
        [String: (weights: [UInt8], metrics: [UInt8])] = [:]

    /// The weights and metrics files of run `name`, as bytes.
    func outputs(_ name: String) throws -> (weights: Data, metrics: Data) {
        (
            try Data(contentsOf: URL(fileURLWithPath: weights(name))),
            try Data(contentsOf: URL(fileURLWithPath: metrics(name)))
        )
    }

    /// The checkpoint files of run `name`, oldest first.
    func checkpointFiles(_ name: String) -> [String] {
        let names =
            (try? FileManager.default.contentsOfDirectory(
                atPath: checkpoints(name))) ?? []
        return names.filter {
            $0.hasPrefix("ckpt-e") && $0.hasSuffix(".safetensors")
        }.sorted()
    }

    /// Asserts that run `name` ended with exactly the reference's files.
    func assertSameOutputs(
        _ name: String, as reference: (weights: Data, metrics: Data),
        _ context: String, file: StaticString = #filePath, line: UInt = #line
    ) throws -> Bool {
        guard FileManager.default.fileExists(atPath: weights(name)) else {
            XCTFail("\(context): no weights written", file: file, line: line)
            return false
        }
        let mine = try outputs(name)
        let same =
            mine.weights == reference.weights
            && mine.metrics == reference.metrics
        XCTAssertEqual(
            mine.weights, reference.weights,
            "\(context): weights differ from the uninterrupted run",
            file: file, line: line)
        XCTAssertEqual(
            String(decoding: mine.metrics, as: UTF8.self),
            String(decoding: reference.metrics, as: UTF8.self),
            "\(context): metrics differ", file: file, line: line)
        return same
    }
}

/// The ranks mpirun `parent` started on this machine, by rank: its child
/// processes whose environment has OMPI_COMM_WORLD_RANK.
func mpiRanks(of parent: Int32) -> [Int: Int32] {
    var ranks: [Int: Int32] = [:]
    let tasks =
        (try? FileManager.default.contentsOfDirectory(
            atPath: "/proc/\(parent)/task")) ?? []
    for task in tasks {
        guard
            let text = try? String(
                contentsOfFile: "/proc/\(parent)/task/\(task)/children",
                encoding: .utf8)
        else { continue }
        for word in text.split(separator: " ") {
            guard let pid = Int32(word),
                let environ = FileManager.default.contents(
                    atPath: "/proc/\(pid)/environ")
            else { continue }
            for entry in environ.split(separator: 0) {
                let text = String(decoding: entry, as: UTF8.self)
                if text.hasPrefix("OMPI_COMM_WORLD_RANK="),
                    let rank = Int(
                        text.dropFirst("OMPI_COMM_WORLD_RANK=".count))
                {
                    ranks[rank] = pid
                }
            }
        }
    }
    return ranks
}
