import Collective
import Foundation
import Network

/// Where training starts: the first epoch to run and how far into it.
struct ResumePoint {
    var epoch = 0
    var progress = EpochProgress()
}

/// The epoch loop of `train`, with its checkpoints, resume and graceful
/// stop. Every rank runs it; rank 0 prints and writes the files.
final class TrainingRun {
    let trainer: Trainer
    let reporter: ProgressReporter
    /// The metrics file; nil on every rank but 0, or without one.
    let log: MetricsLog?
    /// Where checkpoints go (`--checkpoint-dir`); nil for none.
    let folder: CheckpointFolder?
    /// `--checkpoint-every`: global steps between checkpoints, besides the
    /// one at the end of each epoch.
    let every: Int?
    /// `--timing-skip`: steady-state timing of each epoch, for benchmarks.
    let timer: SteadyStateTimer?
    /// This run's settings, stored in and compared with checkpoints; nil
    /// on every rank but 0, or without checkpoints.
    let settings: CheckpointSettings?
    /// The metrics lines of the finished epochs.
    private(set) var history: [String] = []
    /// The global step of the newest checkpoint written or resumed from,
    /// so a stop right after one does not write it again.
    private var savedStep: Int?
    private var reportedSkips = 0

    var comm: Communicator { trainer.comm }

    /// How a run ended.
    enum Ending {
        case finished
        /// The ranks stopped together on this signal (after a checkpoint).
        case stopped(signal: Int32)
    }

    init(
        trainer: Trainer, reporter: ProgressReporter, log: MetricsLog?,
        folder: CheckpointFolder?, every: Int?, settings: CheckpointSettings?,
        timer: SteadyStateTimer? = nil
    ) {
        self.trainer = trainer
        self.reporter = reporter
        self.log = log
        self.folder = folder
        self.every = every
        self.settings = settings
        self.timer = timer
    }

    // MARK: Resume

    /// Continues from the newest valid checkpoint in `folder`: rank 0 finds
    /// it (reporting damaged ones) and checks it against this run, then
    /// every rank gets its bytes. With no checkpoint yet, training starts
    /// at the beginning, as Keras' BackupAndRestore does; when all are
    /// damaged, or a setting differs, every rank stops with rank 0's error.
    func resume() throws -> ResumePoint {
        guard let folder else { return ResumePoint() }
        let steps = trainer.stepsPerEpoch
        let epochs = trainer.settings.epochs
        var bytes = try comm.agreeing { () throws -> [UInt8] in
            guard comm.rank == 0 else { return [] }
            guard let found = try folder.newestValid(warn: printWarning)
            else { return [] }
            let checkpoint = found.checkpoint
            let differences =
                settings?.differences(
                    from: checkpoint.settings) ?? []
            guard differences.isEmpty else {
                throw DataError(
                    "\(found.path) was written with other settings; a "
                        + "resumed run must use the same ones:\n  "
                        + differences.joined(separator: "\n  "))
            }
            guard checkpoint.stepsPerEpoch == steps,
                checkpoint.parameters.count == trainer.model.parameters.count
            else {
                throw DataError(
                    "\(found.path): \(checkpoint.stepsPerEpoch) steps per "
                        + "epoch and \(checkpoint.parameters.count) weights, "
                        + "this run \(steps) and "
                        + "\(trainer.model.parameters.count)")
            }
            guard checkpoint.globalStep <= epochs * steps else {
                throw DataError(
                    "\(found.path) is \(checkpoint.stepInEpoch) step(s) into "
                        + "epoch \(checkpoint.epochsDone + 1), past the "
                        + "--epochs \(epochs) asked for; give --epochs "
                        + "\(checkpoint.epochsDone + 1) or more")
            }
            reporter.printLine(
                "resuming from \(found.path): \(checkpoint.epochsDone) "
                    + "epoch(s) and \(checkpoint.stepInEpoch) step(s) done")
            if checkpoint.ranks != comm.size {
                reporter.printLine(
                    "the checkpoint was written by \(checkpoint.ranks) "
                        + "rank(s); resuming on \(comm.size) rank(s), so the "
                        + "remaining batches are split differently and the "
                        + "results agree with an uninterrupted run to "
                        + "rounding, not bit for bit")
            }
            return found.bytes
        }
        try comm.broadcast(bytes: &bytes, root: 0)
        guard !bytes.isEmpty else {
            reporter.printLine(
                "no checkpoint in \(folder.path) yet; starting from the "
                    + "first epoch")
            return ResumePoint()
        }
        let checkpoint = try comm.agreeing {
            try Checkpoint.decode(bytes, file: folder.path)
        }
        return restore(checkpoint)
    }

    /// Puts the state of `checkpoint` into the trainer and this run.
    private func restore(_ checkpoint: Checkpoint) -> ResumePoint {
        trainer.model.parameters = checkpoint.parameters
        trainer.restoreVelocity(
            checkpoint.velocity, iterations: checkpoint.iterations)
        trainer.skippedSteps = checkpoint.skippedSteps
        reportedSkips = checkpoint.skippedSteps
        history = checkpoint.history
        savedStep = checkpoint.globalStep

        var totals = EpochTotals()
        totals.sums = StepSums(packed: checkpoint.epochSums[...])
        let width = Checkpoint.aucWidth
        var mine = [Double](repeating: 0, count: width)
        if checkpoint.ranks == comm.size {
            // The same rank's own buckets: the epoch's closing all-reduce
            // then adds exactly what the uninterrupted run adds.
            let start = comm.rank * width
            mine = Array(checkpoint.epochAUC[start..<(start + width)])
        } else if comm.rank == 0 {
            // Another rank count: rank 0 carries all the old ranks'
            // buckets, the others start from zero.
            for r in 0..<checkpoint.ranks {
                for k in 0..<width {
                    mine[k] += checkpoint.epochAUC[r * width + k]
                }
            }
        }
        totals.mainAUC.buckets = Array(mine[0..<(width / 2)])
        totals.auxAUC.buckets = Array(mine[(width / 2)...])
        return ResumePoint(
            epoch: checkpoint.epochsDone,
            progress: EpochProgress(
                step: checkpoint.stepInEpoch, totals: totals))
    }

    // MARK: Training

    /// Trains from `start` to the last epoch, or until a stop signal.
    func run(from start: ResumePoint) throws -> Ending {
        let epochs = trainer.settings.epochs
        let steps = trainer.stepsPerEpoch
        let settings = trainer.settings
        if start.epoch >= epochs {
            reporter.printLine(
                "nothing left to train: the checkpoint has finished all "
                    + "\(epochs) epoch(s)")
        }
        for epoch in start.epoch..<max(start.epoch, epochs) {
            reporter.epochStarted(epoch + 1, of: epochs)
            let started = Date()
            let from = epoch == start.epoch ? start.progress : EpochProgress()
            var clock = timer
            clock?.start(at: from.step)
            trainer.phases.reset()
            let outcome = try trainer.runEpoch(epoch, from: from) {
                step, running in
                clock?.stepDone(step + 1, rows: running.sums.rows)
                // The phases count the same steps as the clock.
                if step + 1 == clock?.skip { trainer.phases.reset() }
                let n = max(running.sums.rows, 1)
                reporter.step(
                    step + 1, of: steps,
                    loss: (settings.mainWeight * running.sums.mainLoss
                        + settings.auxWeight * running.sums.auxLoss) / n)
                reportSkips()
                let done = step + 1
                // The last step's checkpoint waits for the epoch's end,
                // where it also holds the epoch's metrics.
                if let every, done < steps, (epoch * steps + done) % every == 0
                {
                    try save(
                        epochsDone: epoch,
                        progress: EpochProgress(step: done, totals: running))
                }
            }
            let totals: EpochTotals
            switch outcome {
            case .finished(let finished):
                totals = finished
            case .stopped(let signal, let progress):
                try stop(signal, epochsDone: epoch, progress: progress)
                return .stopped(signal: signal)
            }
            if let clock {
                reporter.notice(clock.summary(steps: steps))
                if let (others, all) = try trainer.rowSharing() {
                    reporter.notice(
                        "embedding rows' product: \(others) of \(all) "
                            + "pieces computed by another rank than their "
                            + "own")
                }
                for line in try trainer.phaseLines() {
                    reporter.notice(line)
                }
            }
            var figures = totals.figures(
                prefix: "", mainWeight: settings.mainWeight,
                auxWeight: settings.auxWeight)
            if let validation = trainer.validation {
                figures += try trainer.evaluate(validation).figures(
                    prefix: "val_", mainWeight: settings.mainWeight,
                    auxWeight: settings.auxWeight)
            }
            reporter.epochEnded(
                steps: steps, ran: steps - from.step,
                seconds: Date().timeIntervalSince(started), figures: figures)
            let line = MetricsLog.line(epoch: epoch + 1, figures: figures)
            history.append(line)
            try comm.agreeing { try log?.append(line: line) }
            try save(epochsDone: epoch + 1, progress: EpochProgress())
        }
        if trainer.skippedSteps > 0 {
            reporter.printLine(
                "skipped \(trainer.skippedSteps) step(s) in all for a "
                    + "non-finite loss or gradient (--skip-nonfinite)")
        }
        return .finished
    }

    /// Rank 0 says that a step was just skipped.
    private func reportSkips() {
        guard trainer.skippedSteps > reportedSkips else { return }
        reportedSkips = trainer.skippedSteps
        let reason = trainer.lastSkipReason?.fact ?? "a non-finite value"
        reporter.notice(
            "skipped the step (--skip-nonfinite): \(reason); "
                + "\(trainer.skippedSteps) skipped so far")
    }

    /// The ranks agreed to stop before step `progress.step` of the epoch
    /// after `epochsDone`: save where they are, and say how to go on.
    private func stop(
        _ signal: Int32, epochsDone: Int, progress: EpochProgress
    ) throws {
        let place =
            "before step \(progress.step + 1) of epoch "
            + "\(epochsDone + 1)"
        let name = StopSignals.name(signal)
        if let path = try save(epochsDone: epochsDone, progress: progress) {
            reporter.notice(
                "\(name): stopped \(place); checkpoint \(path); continue "
                    + "with the same command and --resume")
        } else {
            reporter.notice(
                "\(name): stopped \(place); nothing saved (no "
                    + "--checkpoint-dir)")
        }
    }

    /// Writes a checkpoint of the state after `progress.step` steps of the
    /// epoch after `epochsDone`; a collective, so every rank calls it at
    /// the same step. Returns its path, nil without `--checkpoint-dir`.
    @discardableResult
    private func save(epochsDone: Int, progress: EpochProgress) throws
        -> String?
    {
        guard let folder else { return nil }
        let steps = trainer.stepsPerEpoch
        let global = epochsDone * steps + progress.step
        let path = folder.file(
            CheckpointFolder.fileName(
                epochsDone: epochsDone, step: progress.step))
        if savedStep == global { return path }
        // Each rank's own AUC buckets of the epoch so far.
        let auc = try comm.allgather(
            progress.totals.mainAUC.buckets + progress.totals.auxAUC.buckets)
        let velocity = try trainer.checkpointVelocity()
        // Rank 0 writes; the others wait for the outcome, so a full disk
        // ends every rank together, and none exits while the file is
        // half written (mpirun kills a job when one rank exits).
        try comm.agreeing {
            guard comm.rank == 0, let settings else { return }
            let model = trainer.model
            if let bad = model.parameters.firstIndex(where: { !$0.isFinite }) {
                // Never let bad weights replace the good checkpoints.
                throw DataError(
                    "not writing checkpoint \(path): weight \(bad) is "
                        + "\(model.parameters[bad])")
            }
            let checkpoint = Checkpoint(
                epochsDone: epochsDone, stepInEpoch: progress.step,
                stepsPerEpoch: steps, ranks: comm.size,
                iterations: trainer.optimizer.iterations,
                skippedSteps: trainer.skippedSteps, settings: settings,
                history: history,
                layout: model.layout.entries.map { "\($0.name) \($0.shape)" }
                    .joined(separator: "\n"),
                parameters: model.parameters,
                velocity: velocity,
                epochSums: progress.totals.sums.packed, epochAUC: auc)
            try folder.write(checkpoint)
        }
        savedStep = global
        return path
    }
}
