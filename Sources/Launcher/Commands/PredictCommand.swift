import Collective
import Foundation
import Network

/// Loads a weights file and a data folder for the commands that only run
/// the model forward, on every rank, agreeing on failure.
func loadFrozenModel(
    weights: String, data folder: String, needLabels: Bool,
    comm: Communicator
) throws -> (HeadlineModel, TrainingData) {
    try comm.agreeing {
        let tensors = try SafeTensors.read(contentsOf: weights)
        var config = try WeightsFile.config(
            of: tensors, path: weights, sequenceLength: 1)
        let data = try TrainingData.load(
            folder: folder, vocabularySize: config.vocabularySize,
            needLabels: needLabels)
        guard data.auxFeatures == config.auxFeatures else {
            throw DataError(
                "\(folder)/aux_input.npy has \(data.auxFeatures) features "
                    + "per row, but the weights in \(weights) expect "
                    + "\(config.auxFeatures)")
        }
        config.sequenceLength = data.sequenceLength
        let model = HeadlineModel(config: config)
        try WeightsFile.load(tensors, path: weights, into: model)
        model.freezeInputProjection()
        return (model, data)
    }
}

/// `headline-trainer predict`: probabilities of both outputs for each row.
enum PredictCommand {
    static let summary = """
        Runs the trained model on a folder of .npy files and writes \
        float32 [N, 2] probabilities (main_output, aux_output) to an .npy \
        file (labels.npy is not needed); or on a CSV of posts, imported with \
        the choices of the training data, and writes a CSV of each text \
        with both probabilities.
        """

    static let options: [OptionSpec] = [
        OptionSpec(
            "weights", value: "FILE",
            help: "trained weights (default headline-model/weights.safetensors)"
        ),
        OptionSpec("data", value: "DIR", help: "folder with the inputs"),
        OptionSpec(
            "csv", value: "FILE", help: "a CSV of posts instead of --data"),
        OptionSpec(
            "prepared", value: "DIR",
            help: "the import choices for --csv (default: the folder of "
                + "the weights)"),
        OptionSpec(
            "out", value: "FILE", help: "where to write the .npy (or .csv)"),
        OptionSpec(
            "batch-size", value: "B",
            help: "rows per forward pass (default 256)"),
    ]

    static func run(_ arguments: [String]) throws -> Int32 {
        let args = try ParsedArguments(arguments, options: options)
        if args.wantsHelp {
            print(
                helpText(command: "predict", summary: summary, options: options)
            )
            return 0
        }
        let weights =
            args.string("weights")
            ?? (RunFolder.defaultPath as NSString).appendingPathComponent(
                RunFolder.weightsName)
        guard let out = args.string("out") else {
            throw UsageError("predict needs --out FILE")
        }
        let batchSize = try args.int(
            "batch-size", default: 256, in: 1...1_000_000)
        if let csv = args.string("csv") {
            guard args.string("data") == nil else {
                throw UsageError("predict takes --data or --csv, not both")
            }
            let prepared =
                args.string("prepared")
                ?? (weights as NSString).deletingLastPathComponent
            return try predictCSV(
                weights: weights, csv: csv,
                prepared: prepared.isEmpty ? "." : prepared, out: out,
                batchSize: batchSize)
        }
        guard let folder = args.string("data") else {
            throw UsageError("predict needs --data DIR or --csv FILE")
        }
        let comm = try Communicator.world()
        let (model, data) = try loadFrozenModel(
            weights: weights, data: folder, needLabels: false, comm: comm)
        let probabilities = try predictAll(
            model: model, data: data, batchSize: batchSize, comm: comm)
        if comm.rank == 0 {
            try NPY.write(
                HostArray(shape: [data.rows, 2], floats: probabilities), to: out
            )
        }
        return 0
    }

    /// Imports `csv` as the training data was imported, predicts every row
    /// and writes `text,main_output,aux_output`.
    static func predictCSV(
        weights: String, csv: String, prepared: String, out: String,
        batchSize: Int
    ) throws -> Int32 {
        let comm = try Communicator.world()
        let (model, data, texts) = try comm.agreeing {
            () throws -> (HeadlineModel, TrainingData, [String]) in
            let choices = try PreparedImport(directory: prepared)
            let rows = try choices.transform(csv: csv)
            let tensors = try SafeTensors.read(contentsOf: weights)
            var config = try WeightsFile.config(
                of: tensors, path: weights,
                sequenceLength: choices.sequenceLength)
            guard config.vocabularySize == choices.record.vocabSize,
                config.auxFeatures == choices.featureCount
            else {
                throw DataError(
                    "\(prepared)/prepare.json makes V = "
                        + "\(choices.record.vocabSize) and A = "
                        + "\(choices.featureCount), but the weights in "
                        + "\(weights) have V = \(config.vocabularySize) and "
                        + "A = \(config.auxFeatures)")
            }
            config.sequenceLength = choices.sequenceLength
            let model = HeadlineModel(config: config)
            try WeightsFile.load(tensors, path: weights, into: model)
            model.freezeInputProjection()
            let data = TrainingData(
                rows: rows.rows, sequenceLength: choices.sequenceLength,
                auxFeatures: choices.featureCount, ids: rows.ids,
                aux: rows.aux, labels: nil)
            return (model, data, rows.texts)
        }
        let probabilities = try predictAll(
            model: model, data: data, batchSize: batchSize, comm: comm)
        if comm.rank == 0 {
            let main = stride(from: 0, to: probabilities.count, by: 2).map {
                probabilities[$0]
            }
            let aux = stride(from: 1, to: probabilities.count, by: 2).map {
                probabilities[$0]
            }
            try writePredictionsCSV(texts: texts, main: main, aux: aux, to: out)
            print("wrote \(texts.count) predictions to \(out)")
        }
        return 0
    }

    /// Both probabilities of every row, [N, 2] flattened; each rank
    /// computes its share and all ranks gather the whole.
    static func predictAll(
        model: HeadlineModel, data: TrainingData, batchSize: Int,
        comm: Communicator
    ) throws -> [Float] {
        let mine = shardRange(
            count: data.rows, rank: comm.rank, size: comm.size)
        var local: [Float] = []
        local.reserveCapacity(mine.count * 2)
        forwardInBatches(
            model: model, data: data, rows: mine, batchSize: batchSize
        ) { batch in
            for r in 0..<batch.count {
                local.append(model.mainProbability(r))
                local.append(model.auxProbability(r))
            }
        }
        // Shards are contiguous and in rank order, so the gathered array
        // is in row order.
        return try comm.allgatherVariable(local)
    }
}

/// `headline-trainer evaluate`: losses, accuracy and AUC on a folder.
enum EvaluateCommand {
    static let summary = """
        Evaluates trained weights on a folder of .npy files: the weighted \
        loss, and each output's loss, accuracy and ROC AUC.
        """

    static let options: [OptionSpec] = [
        OptionSpec("weights", value: "FILE", help: "trained weights"),
        OptionSpec("data", value: "DIR", help: "folder with inputs and labels"),
        OptionSpec(
            "loss-weights", value: "M,A",
            help: "weights of main and aux loss (default 1.0,0.2)"),
        OptionSpec(
            "batch-size", value: "B",
            help: "rows per forward pass (default 256)"),
        OptionSpec("json", help: "print the figures as one JSON object"),
    ]

    static func run(_ arguments: [String]) throws -> Int32 {
        let args = try ParsedArguments(arguments, options: options)
        if args.wantsHelp {
            print(
                helpText(
                    command: "evaluate", summary: summary, options: options))
            return 0
        }
        guard let weights = args.string("weights"),
            let folder = args.string("data")
        else {
            throw UsageError("evaluate needs --weights FILE --data DIR")
        }
        let lossWeights = try args.doubles(
            "loss-weights", count: 2, default: [1.0, 0.2])
        let batchSize = try args.int(
            "batch-size", default: 256, in: 1...1_000_000)
        let comm = try Communicator.world()
        let (model, data) = try loadFrozenModel(
            weights: weights, data: folder, needLabels: true, comm: comm)
        let totals = try Trainer.evaluate(
            model: model, data: data, comm: comm, batchSize: batchSize)
        let figures = totals.figures(
            prefix: "", mainWeight: lossWeights[0], auxWeight: lossWeights[1])
        if comm.rank == 0 {
            if args.flag("json") {
                print(jsonObject(figures))
            } else {
                print(
                    "\(data.rows) rows - "
                        + figures.map {
                            "\($0.0): \(String(format: "%.4f", $0.1))"
                        }.joined(separator: " - "))
            }
        }
        return 0
    }
}
