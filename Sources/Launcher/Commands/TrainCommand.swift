import Collective
import Foundation
import Network

/// `headline-trainer train`: data-parallel training on a prepared folder.
enum TrainCommand {
    static let summary = """
        Trains the headline model on a folder of .npy files (main_input, \
        aux_input, labels). Without --data it imports the bundled Facebook \
        news posts into OUTPUT/data and trains on them. Under mpirun every \
        rank trains a replica on its share of each global batch; rank 0 \
        prints and writes files.
        """

    static let options: [OptionSpec] =
        [
            OptionSpec(
                "data", value: "DIR",
                help: "training folder (default: the bundled data set)"),
            OptionSpec(
                "output", value: "DIR",
                help: "folder for the weights and import choices when "
                    + "--save-weights is not given (default headline-model)"),
            OptionSpec(
                "epochs", value: "N", help: "epochs to train (default 1)"),
            OptionSpec(
                "batch-size", value: "B",
                help: "global batch, split over the ranks (default 32)"),
            OptionSpec(
                "learning-rate", value: "X",
                help: "RMSprop step (default 0.001)"),
            OptionSpec("rho", value: "X", help: "RMSprop decay (default 0.9)"),
            OptionSpec(
                "epsilon", value: "X", help: "RMSprop epsilon (default 1e-7)"),
            OptionSpec(
                "loss-weights", value: "M,A",
                help: "weights of main and aux loss (default 1.0,0.2)"),
            OptionSpec(
                "seed", value: "N",
                help:
                    "seed of the initial weights and the shuffling (default 1)"),
            OptionSpec(
                "no-shuffle", help: "keep the data order in every epoch"),
            OptionSpec(
                "gradient-exchange", value: "MODE",
                help: "embedding gradient between ranks: sparse (each "
                    + "rank sums and updates the touched rows it owns, then "
                    + "shares them), dense (all-reduce of the whole table, "
                    + "every rank updates every touched row) or auto, "
                    + "which is sparse (default auto)"),
            OptionSpec(
                "timing-skip", value: "K",
                help:
                    "for benchmarks: after each epoch also print the wall and "
                    + "CPU time of its steps after the first K (rank 0), "
                    + "and each rank's time per phase of a step"),
            OptionSpec(
                "validation-split", value: "F",
                help: "hold out the last fraction F of the rows (default 0, "
                    + "or the split of a prepared folder)"),
            OptionSpec(
                "init-weights", value: "FILE",
                help: "start from these weights (.safetensors); sizes from it"),
            OptionSpec(
                "save-weights", value: "FILE",
                help: "write the trained weights (.safetensors, Keras names)"),
            OptionSpec(
                "metrics", value: "FILE",
                help: "write one JSON object per epoch (.jsonl; replaced)"),
            OptionSpec(
                "checkpoint-dir", value: "DIR",
                help: "write a checkpoint here at the end of every epoch"),
            OptionSpec(
                "checkpoint-every", value: "N",
                help: "also checkpoint every N steps (counted across epochs)"),
            OptionSpec(
                "keep-checkpoints", value: "K",
                help: "keep the newest K checkpoints (default 3)"),
            OptionSpec(
                "resume",
                help: "go on from the newest checkpoint, up to --epochs"),
            OptionSpec(
                "skip-nonfinite",
                help: "skip steps with a NaN/inf loss or gradient, not stop"),
        ] + ModelOptions.options

    static func run(_ arguments: [String]) throws -> Int32 {
        let args = try ParsedArguments(arguments, options: options)
        if args.wantsHelp {
            print(
                helpText(command: "train", summary: summary, options: options))
            return 0
        }
        var settings = TrainSettings()
        settings.epochs = try args.int("epochs", default: 1, in: 1...1_000_000)
        settings.globalBatch = try args.int(
            "batch-size", default: 32, in: 1...10_000_000)
        settings.learningRate = try args.double(
            "learning-rate", default: 0.001, expected: "a positive number"
        ) { $0 > 0 }
        settings.rho = try args.double(
            "rho", default: 0.9, expected: "a number in [0, 1)"
        ) { $0 >= 0 && $0 < 1 }
        settings.epsilon = try args.double(
            "epsilon", default: 1e-7, expected: "a positive number"
        ) { $0 > 0 }
        let weights = try args.doubles(
            "loss-weights", count: 2, default: [1.0, 0.2])
        guard weights.allSatisfy({ $0 >= 0 }) else {
            throw UsageError("option '--loss-weights' expects weights >= 0")
        }
        (settings.mainWeight, settings.auxWeight) = (weights[0], weights[1])
        settings.seed = UInt64(
            try args.int("seed", default: 1, in: 0...Int.max))
        settings.shuffle = !args.flag("no-shuffle")
        if let mode = args.string("gradient-exchange") {
            guard let parsed = GradientExchange.Mode(rawValue: mode) else {
                throw UsageError(
                    "option '--gradient-exchange' expects auto, dense or "
                        + "sparse, got '\(mode)'")
            }
            settings.exchange = parsed
        }
        let timingSkip =
            args.string("timing-skip") == nil
            ? nil : try args.int("timing-skip", default: 0, in: 0...Int.max)
        settings.validationSplit = try args.double(
            "validation-split", default: 0, expected: "a fraction in [0, 1)"
        ) { $0 >= 0 && $0 < 1 }
        let splitGiven = args.string("validation-split") != nil
        let output = args.string("output") ?? RunFolder.defaultPath
        let initWeights = args.string("init-weights")
        let saveWeights = args.string("save-weights")
        let metricsPath =
            args.string("metrics")
            ?? (args.string("data") == nil && args.string("save-weights") == nil
                ? (output as NSString).appendingPathComponent("metrics.jsonl")
                : nil)
        let sizes = try ModelOptions.parse(args)
        settings.skipNonFinite = args.flag("skip-nonfinite")
        let checkpointDir = args.string("checkpoint-dir")
        let resume = args.flag("resume")
        let every = try args.string("checkpoint-every").map { _ in
            try args.int("checkpoint-every", default: 1, in: 1...Int.max)
        }
        let keep = try args.int(
            "keep-checkpoints", default: 3, in: 1...1_000_000)
        for (option, given) in [
            ("--resume", resume), ("--checkpoint-every", every != nil),
            ("--keep-checkpoints", args.string("keep-checkpoints") != nil),
        ] where given && checkpointDir == nil {
            throw UsageError("\(option) needs --checkpoint-dir DIR")
        }
        let faults = try TestFaults.fromEnvironment()

        let comm = try Communicator.world()
        // From here a SIGTERM or SIGINT asks for a stop at the next step.
        try StopSignals.install()
        guard settings.globalBatch >= comm.size else {
            throw UsageError(
                "--batch-size \(settings.globalBatch) is smaller than the "
                    + "\(comm.size) ranks; every rank needs at least one row "
                    + "of a full batch")
        }
        let reporter = ProgressReporter(
            enabled: comm.rank == 0, distributed: comm.isDistributed)
        let dataFolder =
            try args.string("data")
            ?? RunFolder.prepareBundledData(
                in: output, comm: comm, reporter: reporter)

        // Every rank reads and checks the files itself (they are small next
        // to the model's work), then the ranks agree that all succeeded.
        var (model, data, log) = try comm.agreeing {
            () throws -> (HeadlineModel, TrainingData, MetricsLog?) in
            var tensors: [(name: String, array: HostArray)] = []
            var config: ModelConfig
            if let initWeights {
                tensors = try SafeTensors.read(contentsOf: initWeights)
                config = try WeightsFile.config(
                    of: tensors, path: initWeights, sequenceLength: 1)
            } else {
                config = sizes
            }
            let data = try TrainingData.load(
                folder: dataFolder, vocabularySize: config.vocabularySize,
                needLabels: true)
            config.sequenceLength = data.sequenceLength
            if initWeights != nil, config.auxFeatures != data.auxFeatures {
                throw DataError(
                    "\(dataFolder)/aux_input.npy has \(data.auxFeatures) "
                        + "features per row, but the weights in "
                        + "\(initWeights!) expect \(config.auxFeatures)")
            }
            config.auxFeatures = data.auxFeatures
            try checkFitsInMemory(config)
            let model = HeadlineModel(config: config)
            // Rank 0 alone initialises or loads; the broadcast below gives
            // every rank the same starting point.
            if comm.rank == 0 {
                if let initWeights {
                    try WeightsFile.load(
                        tensors, path: initWeights, into: model)
                } else {
                    Initializers.kerasDefaults(
                        &model.parameters, layout: model.layout,
                        seed: settings.seed)
                }
            }
            // Output paths fail now, on every rank together, rather than
            // after the training they would have kept.
            var log: MetricsLog?
            if comm.rank == 0 {
                if let saveWeights {
                    try checkOutputPath(saveWeights, option: "--save-weights")
                }
                if resume, let metricsPath {
                    // Rewritten from the checkpoint's history below.
                    try checkOutputPath(metricsPath, option: "--metrics")
                    log = MetricsLog(appendingTo: metricsPath)
                } else {
                    log = try metricsPath.map { try MetricsLog(path: $0) }
                }
                try checkpointDir.map {
                    try CheckpointFolder(path: $0, keep: keep)
                        .prepare(resuming: resume)
                }
            }
            return (model, data, log)
        }
        try comm.broadcast(&model.parameters, root: 0)

        // Keras' rule: the last fraction is held out, before any shuffling.
        // A prepared folder was shuffled and split at import; its split
        // holds unless another is asked for.
        let preparedRows =
            splitGiven
            ? nil : RunFolder.preparedTrainingRows(in: dataFolder)
        let trainRows =
            preparedRows.map { min($0, data.rows) }
            ?? Int(Double(data.rows) * (1 - settings.validationSplit))
        guard trainRows > 0 else {
            throw AgreedFailure(
                rank: 0,
                local: comm.rank == 0
                    ? DataError(
                        "--validation-split \(settings.validationSplit) "
                            + "leaves no training rows of \(data.rows)")
                    : nil)
        }
        let train = trainRows == data.rows ? data : data.slice(0..<trainRows)
        let validation =
            trainRows < data.rows
            ? data.slice(trainRows..<data.rows) : nil
        // The slices are copies; drop the whole so it is not held twice.
        data = train

        let trainer = Trainer(
            comm: comm, model: model, settings: settings, train: train,
            validation: validation)
        trainer.faults = faults
        if comm.rank == 0 && comm.size > 1 {
            reporter.printLine(
                "training on \(comm.size) ranks, global batch "
                    + "\(settings.globalBatch), \(train.rows) rows"
                    + (validation.map { ", \($0.rows) for validation" } ?? ""))
        }
        let folder = checkpointDir.map {
            CheckpointFolder(path: $0, keep: keep)
        }
        // What a checkpoint must share with its resumed run; rank 0 reads
        // the data files' fingerprints.
        let fingerprint = try comm.agreeing {
            () throws -> CheckpointSettings? in
            guard comm.rank == 0, folder != nil else { return nil }
            return try CheckpointSettings(
                settings: settings, config: model.config,
                dataFolder: dataFolder, dataRows: data.rows,
                trainingRows: train.rows,
                validationRows: validation?.rows ?? 0)
        }
        let run = TrainingRun(
            trainer: trainer, reporter: reporter, log: log, folder: folder,
            every: every, settings: fingerprint,
            timer: timingSkip.map { SteadyStateTimer(skip: $0) })
        var start = ResumePoint()
        if resume {
            start = try run.resume()
            try comm.agreeing { try log?.replace(with: run.history) }
        }
        if case .stopped(let signal) = try run.run(from: start) {
            return StopSignals.exitStatus(signal)
        }
        // Agreed, so a failed write ends every rank at once.
        try comm.agreeing {
            guard comm.rank == 0 else { return }
            if let saveWeights {
                try WeightsFile.save(model, to: saveWeights)
            } else {
                try FileManager.default.createDirectory(
                    atPath: output, withIntermediateDirectories: true)
                let path = (output as NSString).appendingPathComponent(
                    RunFolder.weightsName)
                try WeightsFile.save(model, to: path)
                try RunFolder.copyImportChoices(from: dataFolder, to: output)
                reporter.printLine(
                    "saved the weights and import choices in \(output)")
            }
        }
        return 0
    }
}

/// CPU time used so far by this process (all its threads), in seconds.
func processCPUSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}

/// Refuses sizes whose weights, gradients and optimizer state (three
/// float32 copies) would not fit in this machine's memory, before anything
/// is allocated.
func checkFitsInMemory(_ config: ModelConfig) throws {
    let memory = ProcessInfo.processInfo.physicalMemory
    guard let count = config.parameterCount,
        count <= Int(memory / 12)
    else {
        let sizes =
            "V=\(config.vocabularySize), E=\(config.embeddingWidth), "
            + "U=\(config.lstmUnits), H=\(config.denseUnits)"
        throw UsageError(
            "the model sizes \(sizes) need "
                + (config.parameterCount.map { "\($0) weights" }
                    ?? "more weights than can be counted")
                + "; this machine's \(memory >> 20) MiB of memory holds at "
                + "most \(memory / 12) (weights, gradients and RMSprop "
                + "velocity, 4 bytes each)")
    }
}

/// The model-size options shared by the commands that build a model.
enum ModelOptions {
    static let options: [OptionSpec] = [
        OptionSpec(
            "vocab-size", value: "V",
            help: "token ids are 0..<V (default 10000)"),
        OptionSpec(
            "embedding-dim", value: "E", help: "embedding width (default 512)"),
        OptionSpec("lstm-units", value: "U", help: "LSTM units (default 32)"),
        OptionSpec(
            "dense-units", value: "H", help: "hidden dense width (default 64)"),
        OptionSpec(
            "dense-layers", value: "N",
            help: "hidden dense layers (default 3)"),
    ]

    /// The sizes given on the command line; T and A come from the data.
    static func parse(_ args: ParsedArguments) throws -> ModelConfig {
        let limit = 1...100_000_000
        return ModelConfig(
            vocabularySize: try args.int(
                "vocab-size", default: 10000, in: limit),
            embeddingWidth: try args.int(
                "embedding-dim", default: 512, in: limit),
            lstmUnits: try args.int("lstm-units", default: 32, in: 1...100_000),
            denseUnits: try args.int(
                "dense-units", default: 64, in: 1...100_000),
            denseLayers: try args.int("dense-layers", default: 3, in: 1...1000))
    }
}

/// Throws unless `path` can become a file: not empty, not a folder, in an
/// existing folder that this process may write into.
func checkOutputPath(_ path: String, option: String) throws {
    var isDirectory: ObjCBool = false
    let exists = FileManager.default.fileExists(
        atPath: path, isDirectory: &isDirectory)
    guard !path.isEmpty else {
        throw DataError("\(option) needs a file path, got an empty one")
    }
    guard !path.hasSuffix("/"), !(exists && isDirectory.boolValue) else {
        throw DataError(
            "\(option) '\(path)': expected a file path, not a folder")
    }
    let parent = (path as NSString).deletingLastPathComponent
    let folder = parent.isEmpty ? "." : parent
    guard
        FileManager.default.fileExists(
            atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue
    else {
        throw DataError(
            "\(option) '\(path)': the folder '\(folder)' does not exist")
    }
    guard access(folder, W_OK) == 0 else {
        throw DataError(
            "\(option) '\(path)': cannot write into '\(folder)': "
                + String(cString: strerror(errno)))
    }
}
