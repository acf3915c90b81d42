import Foundation

/// Where a rank's training steps spend their time, phase by phase, summed
/// over the steps since the last `reset()`: what `--timing-skip` prints
/// next to the steady-state figure, so that a slow two-rank run can be
/// read without a profiler.
///
/// A phase ends where the next begins, so the phases add up to the step.
/// Marking one costs a clock read (tens of nanoseconds) and allocates
/// nothing, so it stays on in every run.
struct StepPhases {
    enum Phase: Int, CaseIterable {
        /// The agreement on failures and stop signals, before the step.
        case agreement
        /// Assembling this rank's share of the global batch.
        case batch
        /// The forward pass.
        case forward
        /// The backward pass, up to the embedding rows' product where
        /// that is shared out.
        case backward
        /// The shared-out embedding rows' product: this rank's pieces,
        /// other ranks' pieces, and waiting for its own pieces.
        case rows
        /// The gradients' exchange and the agreement on non-finite ones.
        case exchange
        /// RMSprop.
        case update
        /// Taking the rows the other ranks updated.
        case sharing

        var name: String {
            switch self {
            case .agreement: "agreement"
            case .batch: "batch"
            case .forward: "forward"
            case .backward: "backward"
            case .rows: "rows' product"
            case .exchange: "exchange"
            case .update: "update"
            case .sharing: "sharing"
            }
        }
    }

    /// Nanoseconds per phase.
    private(set) var nanoseconds = [UInt64](
        repeating: 0, count: Phase.allCases.count)
    /// Steps whose phases were all marked since the last reset.
    private(set) var steps = 0
    private var last: UInt64 = 0

    /// Starts a step's clock.
    mutating func begin() { last = StepPhases.now() }

    /// Ends `phase`, which ran since the last mark.
    mutating func end(_ phase: Phase) {
        let now = StepPhases.now()
        nanoseconds[phase.rawValue] &+= now &- last
        last = now
    }

    /// Counts one finished step.
    mutating func stepDone() { steps += 1 }

    mutating func reset() {
        for k in nanoseconds.indices { nanoseconds[k] = 0 }
        steps = 0
    }

    /// Milliseconds per step of each phase, in `Phase` order (zeros when
    /// no step was counted).
    var millisecondsPerStep: [Double] {
        nanoseconds.map { steps == 0 ? 0 : Double($0) / 1e6 / Double(steps) }
    }

    /// One line for rank `rank`, from `millisecondsPerStep`.
    static func line(rank: Int, _ ms: ArraySlice<Double>) -> String {
        let parts = zip(Phase.allCases, ms).map {
            "\($0.name) " + String(format: "%.3f", $1)
        }
        return "phases, ms/step (rank \(rank)): "
            + parts.joined(separator: ", ")
            + String(format: " = %.3f", ms.reduce(0, +))
    }

    private static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}
