import Foundation
import Network

/// What rank 0 prints while training: a progress bar when standard output
/// is a terminal, and one Keras-like line per epoch either way.
struct ProgressReporter {
    /// True when this process prints (rank 0).
    let enabled: Bool
    /// True when standard output is a terminal, so a bar can redraw itself.
    let interactive: Bool
    /// When the bar was last drawn, in seconds of a monotonic clock.
    private let lastDraw = Box(-Double.infinity)
    /// The bar redraws at most this often (as Keras' does): a redraw
    /// costs a write to the terminal, and every other rank waits for rank
    /// 0's at the next step.
    static let redrawInterval = 0.05

    /// `distributed`: started by an MPI launcher. OpenMPI hands its ranks
    /// a pseudo-terminal as standard output even when mpirun's own output
    /// goes to a file, so there the launcher's output is what counts.
    init(enabled: Bool, distributed: Bool) {
        self.enabled = enabled
        interactive =
            enabled && isatty(STDOUT_FILENO) == 1
            && (!distributed || launcherOutputIsTerminal())
    }

    func epochStarted(_ epoch: Int, of epochs: Int) {
        guard enabled else { return }
        printLine("Epoch \(epoch)/\(epochs)")
    }

    /// Redraws the bar, unless it was drawn under `redrawInterval` ago
    /// (the last step's always is); does nothing unless the output is a
    /// terminal, so logs get no control characters.
    func step(_ done: Int, of total: Int, loss: Double) {
        guard interactive else { return }
        let now = monotonicSeconds()
        guard done >= total || now - lastDraw.value >= Self.redrawInterval
        else { return }
        lastDraw.value = now
        let width = 30
        let filled = total == 0 ? width : done * width / total
        let bar =
            String(repeating: "=", count: filled)
            + String(repeating: ".", count: width - filled)
        // Carriage return, then erase the line: the bar redraws in place.
        let text =
            "\r\u{1B}[K\(done)/\(total) [\(bar)] - loss: "
            + format(loss)
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// The closing line of an epoch: steps, time, then every figure.
    /// `ran`: the steps this process ran, fewer than `steps` in an epoch
    /// that a resume entered part-way (nil: all).
    func epochEnded(
        steps: Int, ran: Int? = nil, seconds: Double,
        figures: [(String, Double)]
    ) {
        guard enabled else { return }
        if interactive {
            FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
        }
        let timed = ran ?? steps
        let perStep = timed > 0 ? seconds / Double(timed) * 1000 : 0
        var parts = [
            "\(steps)/\(steps) - \(String(format: "%.1f", seconds))s "
                + "\(String(format: "%.0f", perStep))ms/step"
        ]
        parts += figures.map { "\($0.0): \(format($0.1))" }
        printLine(parts.joined(separator: " - "))
    }

    /// A line in the middle of an epoch: the bar, if any, is erased first
    /// and redraws itself at the next step.
    func notice(_ text: String) {
        guard enabled else { return }
        if interactive {
            FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
        }
        printLine(text)
    }

    /// A line of its own; printed by rank 0 only, like everything here, so
    /// callers that every rank reaches print it once per job.
    func printLine(_ text: String) {
        guard enabled else { return }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    private func format(_ value: Double) -> String {
        String(format: "%.4f", value)
    }
}

/// A value that a struct's non-mutating methods can change.
private final class Box<Value> {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Seconds of a clock that never goes back.
private func monotonicSeconds() -> Double {
    Double(DispatchTime.now().uptimeNanoseconds) / 1e9
}

/// Whether the parent process (mpirun or its daemon, which forwards our
/// output) writes its standard output to a terminal. Linux only: anything
/// unreadable counts as not a terminal, so logs stay clean.
func launcherOutputIsTerminal() -> Bool {
    let link = "/proc/\(getppid())/fd/1"
    guard
        let target = try? FileManager.default.destinationOfSymbolicLink(
            atPath: link)
    else { return false }
    return target.hasPrefix("/dev/pts/") || target.hasPrefix("/dev/tty")
}

/// Appends one strict-JSON object per epoch to a `.jsonl` file.
struct MetricsLog {
    let path: String

    /// Starts an empty file (an existing one is replaced).
    init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: Data())
        else {
            throw DataError(
                "\(path): cannot create the metrics file: "
                    + String(cString: strerror(errno)))
        }
    }

    /// Keeps an existing file, for a resumed run.
    init(appendingTo path: String) { self.path = path }

    /// `{"epoch": n, name: value, ...}`, without the newline.
    static func line(epoch: Int, figures: [(String, Double)]) -> String {
        jsonObject(figures, first: "\"epoch\": \(epoch)")
    }

    /// Replaces the file's contents with `lines`, atomically: a resumed
    /// run starts from the epochs its checkpoint finished, whatever the
    /// interrupted run had appended after it.
    func replace(with lines: [String]) throws {
        let text = lines.map { $0 + "\n" }.joined()
        try writeFileAtomically(Array(text.utf8), to: path)
    }

    /// Appends one line (a newline is added).
    func append(line text: String) throws {
        let line = text + "\n"
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw DataError(
                "\(path): cannot open the metrics file for writing: "
                    + String(cString: strerror(errno)))
        }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(line.utf8))
            try handle.synchronize()
        } catch {
            throw DataError("\(path): cannot write the metrics file: \(error)")
        }
    }
}

/// `{name: value, ...}` for `figures`, after the member `first` when
/// given. Non-finite values become null, because JSON has no NaN.
func jsonObject(_ figures: [(String, Double)], first: String? = nil)
    -> String
{
    let members =
        (first.map { [$0] } ?? [])
        + figures.map { name, value in
            "\"\(name)\": " + (value.isFinite ? "\(value)" : "null")
        }
    return "{" + members.joined(separator: ", ") + "}"
}
