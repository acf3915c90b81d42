import Foundation
import Network

/// Everything a run needs to go on exactly where it stopped, as one
/// `.safetensors` file.
///
/// Tensors:
///
/// - `parameters` F32 [P]: every weight, in the model's parameter layout
///   (the `layout` metadata lists it: name and shape per weight).
/// - `velocity` F32 [P]: RMSprop's velocity, in the same layout.
/// - `epoch_sums` F64 [5]: loss, accuracy and row sums of the steps of the
///   epoch in progress, already summed over the ranks.
/// - `epoch_auc` F64 [R, 800]: the main and aux AUC buckets of the epoch in
///   progress, per rank. Ranks add their buckets up only at the end of an
///   epoch, so each rank's own share is kept: a resume on as many ranks
///   then adds exactly the same numbers in the same order.
///
/// Metadata (strings): `format`, `epochs_done`, `step_in_epoch`,
/// `steps_per_epoch`, `global_step`, `ranks`, `iterations`,
/// `skipped_steps`, `history` (the metrics line of every finished epoch,
/// so the metrics file of a resumed run is the uninterrupted run's),
/// `setting.*` (what must match on resume, see `CheckpointSettings`),
/// `data_order`, `random_state` and `checksum`.
///
/// The data order needs no tensor: `epochOrder` is a pure function of the
/// seed and the epoch, and both are stored. Nor does any random state:
/// the seed's only other use is the initial weights, which a checkpoint
/// replaces, and the model has no dropout or other noise.
///
/// `checksum` is `sha256:` and the SHA-256 of the whole file as it is
/// encoded without that one entry (encoding is deterministic: metadata
/// sorted, tensors in a fixed order), so any changed byte, in the header
/// or the data, is caught.
struct Checkpoint {
    static let format = "headline-trainer checkpoint 1"
    /// AUC buckets per rank: main then aux, 400 each.
    static let aucWidth = 4 * AUCAccumulator.thresholds

    /// Epochs finished.
    var epochsDone: Int
    /// Steps finished in the epoch after those (0 at an epoch's end).
    var stepInEpoch: Int
    var stepsPerEpoch: Int
    /// The number of ranks that wrote it.
    var ranks: Int
    /// RMSprop updates applied so far.
    var iterations: Int
    /// Steps skipped so far for a non-finite loss or gradient.
    var skippedSteps: Int
    var settings: CheckpointSettings
    /// The metrics lines (JSON objects) of the finished epochs.
    var history: [String]
    /// `name [shape]` per weight, one per line, for a reader of the file.
    var layout: String
    var parameters: [Float]
    var velocity: [Float]
    /// `StepSums.packed` of the epoch in progress.
    var epochSums: [Double]
    /// `ranks` rows of `aucWidth` buckets.
    var epochAUC: [Double]

    /// Steps finished since the start of training.
    var globalStep: Int { epochsDone * stepsPerEpoch + stepInEpoch }

    /// The bytes of the file, checksum included.
    func encoded() throws -> [UInt8] {
        var metadata = plainMetadata
        let unsigned = try SafeTensors.encode(tensors, metadata: metadata)
        metadata["checksum"] = "sha256:" + SHA256.hex(unsigned)
        return try SafeTensors.encode(tensors, metadata: metadata)
    }

    /// Decodes and checks a checkpoint; `file` names it in errors. Throws
    /// unless the file is complete, its checksum matches and its contents
    /// are consistent.
    static func decode(_ bytes: [UInt8], file: String) throws -> Checkpoint {
        func damaged(_ why: String) -> DataError {
            DataError("\(file): \(why)")
        }
        let tensors = try SafeTensors.decode(bytes, file: file)
        var metadata = try SafeTensors.decodeMetadata(bytes, file: file)
        guard metadata["format"] == format else {
            throw damaged(
                "not a checkpoint of this trainer (format "
                    + "\(metadata["format"].map { "'\($0)'" } ?? "missing"), "
                    + "expected '\(format)')")
        }
        guard let stored = metadata.removeValue(forKey: "checksum") else {
            throw damaged("has no checksum")
        }
        let actual =
            "sha256:"
            + SHA256.hex(try SafeTensors.encode(tensors, metadata: metadata))
        guard stored == actual else {
            throw damaged(
                "checksum mismatch (stored \(stored), computed \(actual)); "
                    + "the file was changed or damaged after it was written")
        }
        func integer(_ key: String) throws -> Int {
            guard let text = metadata[key], let value = Int(text), value >= 0
            else { throw damaged("missing or malformed '\(key)'") }
            return value
        }
        func tensor(_ name: String, _ type: ElementType, count: Int) throws
            -> HostArray
        {
            guard let found = tensors.first(where: { $0.name == name })?.array,
                found.elementType == type, found.count == count
            else {
                throw damaged(
                    "tensor '\(name)' is missing, or not \(count) "
                        + "\(type.rawValue) values")
            }
            return found
        }
        let params =
            tensors.first { $0.name == "parameters" }?.array.count
            ?? 0
        let ranks = try integer("ranks")
        var checkpoint = Checkpoint(
            epochsDone: try integer("epochs_done"),
            stepInEpoch: try integer("step_in_epoch"),
            stepsPerEpoch: try integer("steps_per_epoch"),
            ranks: ranks, iterations: try integer("iterations"),
            skippedSteps: try integer("skipped_steps"),
            settings: CheckpointSettings(metadata: metadata),
            history: (metadata["history"] ?? "").split(separator: "\n")
                .map(String.init),
            layout: metadata["layout"] ?? "",
            parameters: try tensor("parameters", .float32, count: params)
                .floats(),
            velocity: try tensor("velocity", .float32, count: params).floats(),
            epochSums: try tensor(
                "epoch_sums", .float64, count: StepSums.packedCount
            )
            .doubles(),
            epochAUC: try tensor(
                "epoch_auc", .float64, count: ranks * aucWidth
            ).doubles())
        guard checkpoint.stepsPerEpoch > 0, ranks > 0,
            checkpoint.stepInEpoch < checkpoint.stepsPerEpoch,
            try integer("global_step") == checkpoint.globalStep
        else {
            throw damaged("inconsistent epoch, step and rank counts")
        }
        if let bad = checkpoint.parameters.firstIndex(where: { !$0.isFinite }) {
            throw damaged("weight \(bad) is \(checkpoint.parameters[bad])")
        }
        checkpoint.history.removeAll { $0.isEmpty }
        return checkpoint
    }

    private var tensors: [(name: String, array: HostArray)] {
        [
            (
                "parameters",
                HostArray(
                    shape: [parameters.count],
                    floats: parameters)
            ),
            ("velocity", HostArray(shape: [velocity.count], floats: velocity)),
            (
                "epoch_sums",
                HostArray(
                    shape: [epochSums.count],
                    storage: .float64(epochSums))
            ),
            (
                "epoch_auc",
                HostArray(
                    shape: [ranks, Checkpoint.aucWidth],
                    storage: .float64(epochAUC))
            ),
        ]
    }

    /// The metadata without the checksum.
    private var plainMetadata: [String: String] {
        var metadata: [String: String] = [
            "format": Checkpoint.format,
            "epochs_done": "\(epochsDone)",
            "step_in_epoch": "\(stepInEpoch)",
            "steps_per_epoch": "\(stepsPerEpoch)",
            "global_step": "\(globalStep)",
            "ranks": "\(ranks)",
            "iterations": "\(iterations)",
            "skipped_steps": "\(skippedSteps)",
            "history": history.joined(separator: "\n"),
            "layout": layout,
            "data_order": "epochOrder(rows, epoch, seed, shuffle): a pure "
                + "function of setting.seed, setting.shuffle and the epoch; "
                + "nothing else is stored",
            "random_state": "none besides setting.seed: the initial weights "
                + "are replaced by 'parameters' and training draws no noise",
        ]
        for (key, value) in settings.entries {
            metadata[CheckpointSettings.prefix + key] = value
        }
        return metadata
    }
}

/// The settings a resumed run must share with the run that wrote the
/// checkpoint, or it would not continue the same training: model sizes,
/// batch, seed and shuffling, loss weights, RMSprop's hyper-parameters,
/// the data's shape and split, and a fingerprint of each data file.
///
/// `--epochs`, the checkpoint options and the output paths may change.
struct CheckpointSettings {
    static let prefix = "setting."
    /// Key and value, in a fixed order for messages.
    var entries: [(key: String, value: String)]

    /// The settings of a run; `dataFolder`'s files are fingerprinted, so
    /// call this on one rank only.
    init(
        settings: TrainSettings, config: ModelConfig, dataFolder: String,
        dataRows: Int, trainingRows: Int, validationRows: Int
    ) throws {
        entries = [
            ("vocab-size", "\(config.vocabularySize)"),
            ("embedding-dim", "\(config.embeddingWidth)"),
            ("lstm-units", "\(config.lstmUnits)"),
            ("dense-units", "\(config.denseUnits)"),
            ("dense-layers", "\(config.denseLayers)"),
            ("batch-size", "\(settings.globalBatch)"),
            ("seed", "\(settings.seed)"),
            ("shuffle", "\(settings.shuffle)"),
            ("loss-weights", "\(settings.mainWeight),\(settings.auxWeight)"),
            ("learning-rate", "\(settings.learningRate)"),
            ("rho", "\(settings.rho)"),
            ("epsilon", "\(settings.epsilon)"),
            ("data-rows", "\(dataRows)"),
            ("sequence-length", "\(config.sequenceLength)"),
            ("aux-features", "\(config.auxFeatures)"),
            ("training-rows", "\(trainingRows)"),
            ("validation-rows", "\(validationRows)"),
        ]
        for name in ["main_input.npy", "aux_input.npy", "labels.npy"] {
            let path = (dataFolder as NSString).appendingPathComponent(name)
            entries.append(("data:" + name, try fileFingerprint(path)))
        }
    }

    /// The `setting.*` entries of a checkpoint's metadata.
    init(metadata: [String: String]) {
        let prefix = CheckpointSettings.prefix
        entries = metadata.filter { $0.key.hasPrefix(prefix) }
            .map { (String($0.key.dropFirst(prefix.count)), $0.value) }
            .sorted { $0.key < $1.key }
    }

    /// One line per setting that differs between `self` (this run) and
    /// `stored` (the checkpoint), naming the option; empty when they match.
    func differences(from stored: CheckpointSettings) -> [String] {
        let old = Dictionary(
            stored.entries.map { ($0.key, $0.value) },
            uniquingKeysWith: { a, _ in a })
        var lines: [String] = []
        for (key, value) in entries where old[key] != value {
            let was = old[key].map { "'\($0)'" } ?? "nothing"
            lines.append(
                "\(CheckpointSettings.describe(key)): the checkpoint has "
                    + "\(was), this run '\(value)'")
        }
        let known = Set(entries.map(\.key))
        for (key, value) in stored.entries where !known.contains(key) {
            lines.append(
                "\(key): the checkpoint has '\(value)', this run nothing")
        }
        return lines
    }

    /// What the user changes to change `key`.
    static func describe(_ key: String) -> String {
        switch key {
        case "shuffle": return "--no-shuffle"
        case "data-rows": return "the number of rows in the data"
        case "sequence-length": return "the data's sequence length T"
        case "aux-features": return "the data's aux features per row A"
        case "training-rows", "validation-rows":
            return "the \(key.dropLast(5)) rows (--validation-split or the "
                + "prepared split)"
        default:
            if key.hasPrefix("data:") {
                return "the data file \(key.dropFirst(5)) (size, and SHA-256 "
                    + "of its first and last MiB)"
            }
            return "--" + key
        }
    }
}

/// `size=N sha256=HEX` for the file at `path`, the hash taken over its
/// first and last MiB (the whole file when smaller): cheap for any size,
/// and it changes with the shape in the header, the first rows and the
/// last ones, which is where a different or regenerated file shows.
func fileFingerprint(_ path: String) throws -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw DataError(
            "\(path): cannot open: \(String(cString: strerror(errno)))")
    }
    defer { try? handle.close() }
    let size = try handle.seekToEnd()
    let window: UInt64 = 1 << 20
    var hash = SHA256()
    try handle.seek(toOffset: 0)
    hash.update(
        [UInt8](
            try handle.read(upToCount: Int(min(size, window)))
                ?? Data()))
    if size > window {
        let start = max(window, size - window)
        try handle.seek(toOffset: start)
        hash.update([UInt8](try handle.readToEnd() ?? Data()))
    }
    return "size=\(size) sha256=\(SHA256.hexString(hash.finish()))"
}
