/// Everything `train` was asked to do, already checked. Kept apart from
/// the training loop (and MPI), so the checkpoint code that records these
/// settings builds on its own, as the checkpoint fuzz harness needs.
struct TrainSettings {
    var epochs = 1
    var globalBatch = 32
    var learningRate = 0.001
    var rho = 0.9
    var epsilon = 1e-7
    var mainWeight = 1.0
    var auxWeight = 0.2
    var seed: UInt64 = 1
    var shuffle = true
    var validationSplit = 0.0
    var exchange = ExchangeMode.auto
    /// Skip a step whose loss or gradient is not finite, instead of
    /// stopping (`--skip-nonfinite`).
    var skipNonFinite = false
}

/// How the ranks exchange the embedding gradient's rows.
enum ExchangeMode: String, CaseIterable {
    /// The default: `sparse`, which never moves more than `dense` (see
    /// `GradientExchange`).
    case auto
    /// An all-reduce of the whole table; every rank updates every
    /// touched row.
    case dense
    /// The touched rows, each summed and updated by its owning rank,
    /// then shared.
    case sparse
}
