import Foundation
import Network

/// Faults that the tests inject, set through the environment so that
/// they stay out of `--help` and out of the command lines users copy.
/// For tests only:
///
///     HEADLINE_TEST_FAIL=RANK:STEP[:KIND][,RANK:STEP[:KIND]...]
///
/// makes rank RANK fail at global step STEP (1-based, counted from the
/// first step of training across epochs and resumes) with KIND:
///
/// - `error` (the default): throws before the step. The step's agreement
///   carries it to every rank, so all stop together, cleanly.
/// - `late-error`: throws after the backward pass, while the other ranks
///   already wait in the step's reductions: the job must end through
///   `MPI_Abort` (see `runCommand`), with no rank left waiting.
/// - `nan`: makes one dense gradient of this rank NaN in the backward pass,
///   once the dense block is made (before its reduction may start).
/// - `row-nan`: makes one value of this rank's first embedding row NaN
///   after the backward pass (a row whose sum only its owner forms).
/// - `row-overflow`: sets the first value of every embedding row of this
///   rank to the largest finite float after the backward pass: finite on
///   each rank, but a row that two such ranks touched sums to infinity.
/// - `kill`: sends itself SIGKILL before the step, like a crash or the
///   out-of-memory killer.
/// - `slow`: sleeps 300 ms once its embedding rows' product is put up for
///   sharing (with shared memory), like a rank on a core the machine
///   slowed down, so that the other ranks take its pieces.
///
/// `HEADLINE_TEST_STEP_DELAY_MS=N` sleeps N ms before every step, so a
/// test has time to send a signal while a tiny model trains.
struct TestFaults {
    enum Kind: String {
        case error, lateError = "late-error", nan, kill, slow
        case rowNaN = "row-nan", rowOverflow = "row-overflow"
    }

    struct Fault: Equatable {
        let rank: Int
        let step: Int
        let kind: Kind
    }

    var faults: [Fault] = []
    var stepDelayMilliseconds = 0

    static let failVariable = "HEADLINE_TEST_FAIL"
    static let delayVariable = "HEADLINE_TEST_STEP_DELAY_MS"

    /// The faults the environment asks for; none in normal use.
    static func fromEnvironment() throws -> TestFaults {
        let environment = ProcessInfo.processInfo.environment
        var result = TestFaults()
        if let text = environment[failVariable], !text.isEmpty {
            for item in text.split(separator: ",") {
                let parts = item.split(separator: ":").map(String.init)
                guard parts.count == 2 || parts.count == 3,
                    let rank = Int(parts[0]), rank >= 0,
                    let step = Int(parts[1]), step >= 1,
                    let kind = Kind(
                        rawValue: parts.count == 3
                            ? parts[2]
                            : "error")
                else {
                    throw UsageError(
                        "\(failVariable)='\(text)': expected "
                            + "RANK:STEP[:error|late-error|nan|row-nan|"
                            + "row-overflow|kill|slow], ...")
                }
                result.faults.append(Fault(rank: rank, step: step, kind: kind))
            }
        }
        if let text = environment[delayVariable], !text.isEmpty {
            guard let value = Int(text), (0...60_000).contains(value) else {
                throw UsageError(
                    "\(delayVariable)='\(text)': expected milliseconds "
                        + "in 0...60000")
            }
            result.stepDelayMilliseconds = value
        }
        return result
    }

    private func has(_ kind: Kind, rank: Int, step: Int) -> Bool {
        faults.contains(Fault(rank: rank, step: step, kind: kind))
    }

    /// Before global step `step`: the delay, `kill` and `error`.
    func beforeStep(_ step: Int, rank: Int) throws {
        if stepDelayMilliseconds > 0 {
            usleep(UInt32(stepDelayMilliseconds) * 1000)
        }
        if has(.kill, rank: rank, step: step) {
            fflush(nil)
            kill(getpid(), SIGKILL)
        }
        if has(.error, rank: rank, step: step) {
            throw InjectedFailure(step: step, kind: .error)
        }
    }

    /// When the backward pass of global step `step` has made the dense
    /// gradients, before their reduction may start: `nan`.
    func afterDenseGradients(_ step: Int, rank: Int, model: HeadlineModel) {
        if has(.nan, rank: rank, step: step) {
            // A dense weight's gradient, which every rank reduces whatever
            // rows of the embedding its batch touched.
            let bias = model.layout["main_output/bias"]
            model.gradients[bias.offset] = .nan
        }
    }

    /// Once the embedding rows' product of global step `step` is put up
    /// for sharing, before this rank works on it: `slow`.
    func afterRowsPutUp(_ step: Int, rank: Int) {
        if has(.slow, rank: rank, step: step) { usleep(300_000) }
    }

    /// After the backward pass of global step `step`: `row-nan`,
    /// `row-overflow` and `late-error`.
    func afterBackward(_ step: Int, rank: Int, model: HeadlineModel) throws {
        let rows = model.embeddingRowGradients
        if let base = rows.baseAddress {
            // Test code writing where the model left the rows and, when the
            // backward pass also added them into the table (the dense
            // exchange reduces the table), there too, as a real non-finite
            // value would be in both.
            let values = UnsafeMutablePointer(mutating: base)
            let width = model.config.embeddingWidth
            let ids = model.touchedEmbeddingRows
            let table = model.layout["embedding/embeddings"].offset
            func set(row: Int, column: Int, to value: Float) {
                values[row * width + column] = value
                if model.scattersEmbeddingGradient {
                    model.gradients[
                        table + Int(ids[row]) * width + column] = value
                }
            }
            if has(.rowNaN, rank: rank, step: step) {
                set(row: 0, column: width / 2, to: .nan)
            }
            if has(.rowOverflow, rank: rank, step: step) {
                for row in 0..<(rows.count / width) {
                    set(row: row, column: 0, to: .greatestFiniteMagnitude)
                }
            }
        }
        if has(.lateError, rank: rank, step: step) {
            throw InjectedFailure(step: step, kind: .lateError)
        }
    }
}

/// The error a test fault throws.
struct InjectedFailure: Error, CustomStringConvertible {
    let step: Int
    let kind: TestFaults.Kind

    var description: String {
        "injected test failure (\(TestFaults.failVariable), "
            + "\(kind.rawValue)) at global step \(step)"
    }
}
