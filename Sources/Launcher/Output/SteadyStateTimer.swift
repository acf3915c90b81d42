import Foundation

/// Wall and CPU time of an epoch's steps after the first K, for
/// benchmarks (`train --timing-skip K`): the first steps of a run touch
/// fresh memory and fill caches, so a steady-state figure leaves them out.
struct SteadyStateTimer {
    /// Steps left out at the start of each epoch.
    let skip: Int
    private var from: Mark?
    private var to: Mark?

    private struct Mark {
        let time: ContinuousClock.Instant
        let rows: Double
        let cpu: Double
        let step: Int
    }

    init(skip: Int) { self.skip = skip }

    /// Starts an epoch whose first `done` steps already ran (a resume).
    mutating func start(at done: Int) {
        from = nil
        to = nil
        if done >= skip { from = mark(rows: 0, step: done) }
    }

    /// Records that `done` steps of the epoch have finished, with `rows`
    /// rows (all ranks) trained so far.
    mutating func stepDone(_ done: Int, rows: Double) {
        if done == skip {
            from = mark(rows: rows, step: done)
        } else if done > skip {
            to = mark(rows: rows, step: done)
        }
    }

    /// One line: the steps timed, seconds, ms per step, samples per
    /// second (global) and this process's CPU seconds.
    func summary(steps: Int) -> String {
        guard let from, let to else {
            return "steady state: no steps after the first \(skip) of \(steps)"
        }
        let span = to.time - from.time
        let seconds =
            Double(span.components.seconds)
            + Double(span.components.attoseconds) * 1e-18
        let perStep = seconds * 1000 / Double(to.step - from.step)
        return "steady state: steps \(from.step + 1)-\(to.step) of \(steps) - "
            + String(format: "%.3fs %.2fms/step", seconds, perStep)
            + String(
                format: " - %.1f samples/s", (to.rows - from.rows) / seconds)
            + String(format: " - cpu %.3fs", to.cpu - from.cpu)
    }

    private func mark(rows: Double, step: Int) -> Mark {
        Mark(
            time: ContinuousClock.now, rows: rows, cpu: processCPUSeconds(),
            step: step)
    }
}
