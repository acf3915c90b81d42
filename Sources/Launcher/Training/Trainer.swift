import Collective
import Foundation
import Network

/// Where an epoch starts: its first step, with the figures of the steps
/// before it (a resumed epoch), or at the beginning.
struct EpochProgress {
    /// Steps of the epoch already done.
    var step = 0
    /// Their sums; the AUC buckets are this rank's own.
    var totals = EpochTotals()
}

/// How `Trainer.runEpoch` ended.
enum EpochOutcome {
    /// Every step ran; the totals are summed over all ranks.
    case finished(EpochTotals)
    /// The ranks agreed to stop for `signal` before step `at.step`.
    case stopped(signal: Int32, at: EpochProgress)
}

/// The rows of a global batch that rank `rank` of `size` computes:
/// contiguous, and as even as possible (the first `count % size` ranks get
/// one row more). A rank may get none.
func shardRange(count: Int, rank: Int, size: Int) -> Range<Int> {
    let base = count / size, extra = count % size
    let start = rank * base + min(rank, extra)
    return start..<(start + base + (rank < extra ? 1 : 0))
}

/// The order of the training rows in epoch `epoch` (0-based): the same on
/// every rank, since it depends only on the seed and the epoch.
func epochOrder(rows: Int, epoch: Int, seed: UInt64, shuffle: Bool) -> [Int] {
    var order = Array(0..<rows)
    guard shuffle else { return order }
    var rng = SeededGenerator(
        seed: seed &+ 0x5EED_0000_0000 &+ UInt64(epoch) &* 0x1_0000_0001)
    // Fisher–Yates with our own generator: Swift's shuffle() may change
    // its algorithm between releases, which would change the data order.
    for i in stride(from: rows - 1, to: 0, by: -1) {
        let j = Int(rng.next() % UInt64(i + 1))
        order.swapAt(i, j)
    }
    return order
}

/// One data-parallel training run: every rank holds a replica, computes the
/// gradient of its share of each global batch, and all ranks apply the
/// same RMSprop step to the all-reduced mean gradient.
final class Trainer {
    let comm: Communicator
    let model: HeadlineModel
    let settings: TrainSettings
    var optimizer: RMSprop
    let train: TrainingData
    let validation: TrainingData?
    /// Faults the tests inject; none in normal use.
    var faults = TestFaults()
    /// Steps skipped for a non-finite loss or gradient, in all epochs.
    var skippedSteps = 0
    /// Why the last of them was skipped.
    var lastSkipReason: TrainingError?
    private var batch: Batch
    private var shards: BatchShards
    private var exchange: GradientExchange
    /// This rank's figures of the current step, reused from step to step.
    private var local = EpochTotals()
    /// The step's sums in `StepSums.packed` order, for their reduction,
    /// then one more: the count of ranks whose gradient rows need an
    /// exact look (see `nonFinite`). Kept, so the step allocates nothing.
    private var stepSums = [Double](
        repeating: 0, count: StepSums.packedCount + 1)
    /// The verdict of each rank for `agreedTrouble`, kept for the same
    /// reason.
    private var verdict: [Int64] = [0]
    /// Where this rank's steps spent their time since the last reset
    /// (`TrainingRun` resets it where the steady state starts).
    var phases = StepPhases()

    init(
        comm: Communicator, model: HeadlineModel, settings: TrainSettings,
        train: TrainingData, validation: TrainingData?
    ) {
        self.comm = comm
        self.model = model
        self.settings = settings
        self.train = train
        self.validation = validation
        optimizer = RMSprop(
            count: model.layout.count, learningRate: settings.learningRate,
            rho: settings.rho, epsilon: settings.epsilon)
        let share = (settings.globalBatch + comm.size - 1) / comm.size
        batch = Batch(
            capacity: share, sequenceLength: train.sequenceLength,
            auxFeatures: train.auxFeatures)
        shards = BatchShards(train, globalBatch: settings.globalBatch)
        exchange = GradientExchange(
            comm: comm, model: model, rowsPerRank: share,
            mode: settings.exchange)
        model.zeroGradients()
    }

    /// Steps in one epoch (the last batch may be partial).
    var stepsPerEpoch: Int {
        (train.rows + settings.globalBatch - 1) / settings.globalBatch
    }

    /// Runs epoch `epoch` from `start`; `onStep` sees the running totals
    /// after each step (on every rank; the caller decides who prints).
    func runEpoch(
        _ epoch: Int, from start: EpochProgress = EpochProgress(),
        onStep: (Int, EpochTotals) throws -> Void = { _, _ in }
    ) throws -> EpochOutcome {
        let order = epochOrder(
            rows: train.rows, epoch: epoch, seed: settings.seed,
            shuffle: settings.shuffle)
        var totals = start.totals
        for step in start.step..<stepsPerEpoch {
            phases.begin()
            let globalStep = epoch * stepsPerEpoch + step + 1
            // Before any of the step's collectives: a failure or a stop
            // signal on one rank becomes every rank's, in one all-reduce.
            let signal = try comm.agreeingOnStep {
                try faults.beforeStep(globalStep, rank: comm.rank)
            }
            if signal != 0 {
                return .stopped(
                    signal: signal,
                    at: EpochProgress(step: step, totals: totals))
            }
            phases.end(.agreement)
            let start = step * settings.globalBatch
            let count = min(settings.globalBatch, train.rows - start)
            batch.removeAll()
            shards.forEachRow(
                start: start, count: count, order: order, rank: comm.rank,
                size: comm.size
            ) { row in train.append(row: row, to: &batch) }
            phases.end(.batch)
            exchange.clear(model)
            model.forward(batch)
            phases.end(.forward)
            local.reset()
            local.add(model: model, labels: batch.labels)
            try model.backward(
                labels: batch.labels, mainWeight: Float(settings.mainWeight),
                auxWeight: Float(settings.auxWeight), scale: 1 / Float(count),
                whenProjectionReady: { exchange.putUpEmbeddingRows(model) }
            ) {
                // Through messages the dense block's reduction starts now
                // and overlaps the embedding rows' product.
                faults.afterDenseGradients(
                    globalStep, rank: comm.rank, model: model)
                try exchange.denseGradientsReady(
                    model, sums: stepSums.count)
            }
            phases.end(.backward)
            // With shared memory the embedding rows' product is shared out
            // among the ranks; every rank takes part.
            try exchange.computeEmbeddingRows(model) {
                faults.afterRowsPutUp(globalStep, rank: comm.rank)
            }
            phases.end(.rows)
            try faults.afterBackward(globalStep, rank: comm.rank, model: model)
            // Every rank reaches these collectives, with or without rows.
            local.sums.pack(into: &stepSums)
            stepSums[StepSums.packedCount] =
                exchange.rowsNeedExactCheck(model) ? 1 : 0
            try exchange.exchange(model, sums: &stepSums)
            let reduced = StepSums(packed: stepSums[...])
            if let (rank, trouble) = try verdict(
                on: reduced, epoch: epoch, step: step,
                exactRows: stepSums[StepSums.packedCount] > 0)
            {
                phases.end(.exchange)
                phases.stepDone()
                guard settings.skipNonFinite else {
                    // The lowest rank that saw it alone says why.
                    throw AgreedFailure(rank: rank, local: trouble)
                }
                skippedSteps += 1
                // Only an embedding row can be seen by one rank alone.
                lastSkipReason =
                    trouble
                    ?? .nonFiniteRows(
                        epoch: epoch + 1, step: step + 1, rank: rank)
                try onStep(step, totals)
                continue
            }
            phases.end(.exchange)
            exchange.withSummedRows(model) { rows, rowGradient, rowCopy in
                optimizer.applySparse(
                    to: &model.parameters, gradients: model.gradients,
                    blockOffset: exchange.embeddingOffset,
                    rowWidth: exchange.width, rowCount: exchange.vocabulary,
                    rows: rows, rowGradient: rowGradient, rowCopy: rowCopy)
            }
            phases.end(.update)
            try exchange.shareUpdatedRows(model)
            phases.end(.sharing)
            phases.stepDone()
            totals.sums += reduced
            totals.mainAUC.buckets.addInPlace(local.mainAUC.buckets)
            totals.auxAUC.buckets.addInPlace(local.auxAUC.buckets)
            try onStep(step, totals)
        }
        // The AUC buckets were summed locally; add the other ranks' now.
        var buckets = totals.mainAUC.buckets + totals.auxAUC.buckets
        try comm.allreduce(&buckets, .sum)
        let half = AUCAccumulator.thresholds * 2
        totals.mainAUC.buckets = Array(buckets[0..<half])
        totals.auxAUC.buckets = Array(buckets[half...])
        return .finished(totals)
    }

    /// How the embedding rows' product was shared out since the start
    /// (with shared memory): the pieces that a rank computed for another,
    /// and all pieces, over all ranks; nil where the rows are not shared
    /// out. A collective.
    func rowSharing() throws -> (forOthers: Int, all: Int)? {
        var counts = [
            Int64(exchange.piecesForOthers), Int64(exchange.ownPieces),
        ]
        try comm.allreduce(&counts, .sum)
        return counts[1] > 0 ? (Int(counts[0]), Int(counts[1])) : nil
    }

    /// Every rank's `phases`, a line per rank in rank order, for rank 0
    /// to print. A collective.
    func phaseLines() throws -> [String] {
        let count = StepPhases.Phase.allCases.count
        var all = [Double](repeating: 0, count: comm.size * count)
        let mine = phases.millisecondsPerStep
        for k in 0..<count { all[comm.rank * count + k] = mine[k] }
        try comm.allreduce(&all, .sum)
        return (0..<comm.size).map {
            StepPhases.line(rank: $0, all[($0 * count)..<(($0 + 1) * count)])
        }
    }

    /// Puts a checkpoint's velocity into the optimizer.
    func restoreVelocity(_ velocity: [Float], iterations: Int) {
        exchange.restoreVelocity(
            velocity, iterations: iterations, into: &optimizer)
    }

    /// The optimizer's velocity for a checkpoint; a collective.
    func checkpointVelocity() throws -> [Float] {
        try exchange.checkpointVelocity(optimizer)
    }

    /// Whether the step must not be applied: the lowest rank that found
    /// trouble, with its reason there (nil on the others), or nil when it
    /// may be applied. Every rank gets the same answer, and a bad step is
    /// never applied.
    ///
    /// Judged after the reductions, on the summed values (a NaN or
    /// infinity survives any order of summation). The loss and the dense
    /// gradients are the same on every rank, so their verdict is too. The
    /// embedding rows' sums each lie on one rank only; but unless some
    /// rank's own rows were flagged (`exactRows`, counted with the sums),
    /// no sum can be non-finite, and no rank need look. When one was,
    /// every rank looks at its own and the verdicts are agreed.
    private func verdict(
        on sums: StepSums, epoch: Int, step: Int, exactRows: Bool
    ) throws -> (rank: Int, trouble: TrainingError?)? {
        if exactRows {
            return try agreedTrouble(
                nonFinite(sums, epoch: epoch, step: step, rows: true))
        }
        guard
            let trouble = nonFinite(sums, epoch: epoch, step: step, rows: false)
        else { return nil }
        // Every rank found the same; the lowest says it.
        return (0, comm.rank == 0 ? trouble : nil)
    }

    /// Agrees on this rank's verdict on the step: the lowest rank that
    /// found trouble, with its reason there (nil on the others), or nil
    /// when no rank did. One tiny all-reduce, made by every rank.
    private func agreedTrouble(_ mine: TrainingError?) throws
        -> (rank: Int, trouble: TrainingError?)?
    {
        verdict[0] = Int64(mine == nil ? comm.size : comm.rank)
        try comm.allreduce(&verdict, .min)
        let rank = Int(verdict[0])
        guard rank < comm.size else { return nil }
        return (rank, rank == comm.rank ? mine : nil)
    }

    /// Why step `step` of epoch `epoch` (0-based) cannot be applied, or nil
    /// when its loss and gradients are all finite; `rows`: whether the
    /// embedding rows are looked at too.
    private func nonFinite(
        _ sums: StepSums, epoch: Int, step: Int, rows: Bool
    ) -> TrainingError? {
        guard sums.mainLoss.isFinite, sums.auxLoss.isFinite else {
            return .nonFinite(
                epoch: epoch + 1, step: step + 1,
                main: sums.mainLoss / sums.rows, aux: sums.auxLoss / sums.rows)
        }
        guard let bad = exchange.firstNonFiniteGradient(model, rows: rows)
        else { return nil }
        let entry = model.layout.entries.first { $0.range.contains(bad) }
        return .nonFiniteGradient(
            epoch: epoch + 1, step: step + 1,
            weight: entry?.name ?? "weight \(bad)",
            value: exchange.gradient(at: bad, model))
    }

    /// Loss, accuracy and AUC of the current weights on `data`, with its
    /// rows split over the ranks.
    func evaluate(_ data: TrainingData) throws -> EpochTotals {
        // Each rank's batches no larger than its training share, so the
        // workspace, sized for the worst case of that share, does not
        // grow (by some 30 MB per rank at the full size) for validation.
        try Trainer.evaluate(
            model: model, data: data, comm: comm,
            batchSize: (settings.globalBatch + comm.size - 1) / comm.size)
    }

    /// As `evaluate(_:)`, for any model.
    static func evaluate(
        model: HeadlineModel, data: TrainingData, comm: Communicator,
        batchSize: Int
    ) throws -> EpochTotals {
        let mine = shardRange(
            count: data.rows, rank: comm.rank, size: comm.size)
        var totals = EpochTotals()
        forwardInBatches(
            model: model, data: data, rows: mine, batchSize: batchSize
        ) { batch in
            totals.add(model: model, labels: batch.labels)
        }
        var packed = totals.packed
        try comm.allreduce(&packed, .sum)
        return EpochTotals(packed: packed)
    }
}

/// Runs `model` forward over `rows` of `data`, at most `batchSize` rows at
/// a time, calling `body` with each batch once its outputs are ready.
func forwardInBatches(
    model: HeadlineModel, data: TrainingData, rows: Range<Int>,
    batchSize: Int, _ body: (Batch) -> Void
) {
    var batch = Batch(
        capacity: min(batchSize, rows.count),
        sequenceLength: data.sequenceLength, auxFeatures: data.auxFeatures)
    var row = rows.lowerBound
    while row < rows.upperBound {
        let end = min(row + batchSize, rows.upperBound)
        batch.removeAll()
        for r in row..<end { data.append(row: r, to: &batch) }
        model.forward(batch)
        body(batch)
        row = end
    }
}

/// Training that cannot go on.
enum TrainingError: Error, CustomStringConvertible {
    case nonFinite(epoch: Int, step: Int, main: Double, aux: Double)
    case nonFiniteGradient(epoch: Int, step: Int, weight: String, value: Float)
    /// Seen by rank `rank` in the embedding rows it updates.
    case nonFiniteRows(epoch: Int, step: Int, rank: Int)

    /// What happened, without advice.
    var fact: String {
        switch self {
        case let .nonFinite(epoch, step, main, aux):
            return "the loss became non-finite in epoch \(epoch), step "
                + "\(step) (main_output_loss \(main), aux_output_loss "
                + "\(aux))"
        case let .nonFiniteGradient(epoch, step, weight, value):
            return "the gradient of '\(weight)' became non-finite "
                + "(\(value)) in epoch \(epoch), step \(step)"
        case let .nonFiniteRows(epoch, step, rank):
            return "the gradient of 'embedding/embeddings' became "
                + "non-finite in rows that rank \(rank) updates, in epoch "
                + "\(epoch), step \(step)"
        }
    }

    var description: String {
        fact + "; stopping before the weights are updated. Try a smaller "
            + "--learning-rate, or --skip-nonfinite to skip such steps."
    }
}

extension Array where Element == Double {
    fileprivate mutating func addInPlace(_ other: [Double]) {
        for k in indices { self[k] += other[k] }
    }
}
