import Network

/// Saving and loading the model's weights as safetensors with Keras'
/// variable paths as names, so the files interchange with Keras.
enum WeightsFile {
    /// Writes every weight of `model` to `path`, atomically.
    static func save(_ model: HeadlineModel, to path: String) throws {
        let c = model.config
        let metadata = [
            "format": "headline-trainer weights; Keras variable paths; "
                + "kernels are [in, out], y = x @ kernel + bias",
            "sequence_length": String(c.sequenceLength),
        ]
        // Written from views into the flat buffer: no copy of the weights.
        try model.parameters.withUnsafeBufferPointer { all in
            try SafeTensors.writeFloat32(
                model.layout.entries.map { entry in
                    (
                        entry.name, entry.shape,
                        UnsafeBufferPointer(rebasing: all[entry.range])
                    )
                }, to: path, metadata: metadata)
        }
    }

    /// The model sizes implied by the tensors of a weights file, with the
    /// sequence length taken from the data (weights do not fix it).
    static func config(
        of tensors: [(name: String, array: HostArray)], path: String,
        sequenceLength: Int
    ) throws -> ModelConfig {
        func shape(_ name: String) throws -> [Int] {
            guard let found = tensors.first(where: { $0.name == name }) else {
                throw DataError(
                    "\(path): missing tensor '\(name)'; a weights file "
                        + "holds every weight of the model under Keras' "
                        + "names")
            }
            return found.array.shape
        }
        let embedding = try shape("embedding/embeddings")
        let recurrent = try shape("lstm/lstm_cell/recurrent_kernel")
        let first = try shape("dense/kernel")
        guard embedding.count == 2, recurrent.count == 2, first.count == 2
        else {
            throw DataError(
                "\(path): 'embedding/embeddings', "
                    + "'lstm/lstm_cell/recurrent_kernel' and 'dense/kernel' "
                    + "must be 2-D, got \(embedding), \(recurrent), \(first)")
        }
        // The highest hidden layer named by any tensor (kernel or bias)
        // sets the count, so a tensor missing in between is reported as
        // missing rather than making a shorter model with extra tensors.
        // Indices beyond the --dense-layers limit stay unexpected names.
        var layers = 1
        for (name, _) in tensors where name.hasPrefix("dense_") {
            let digits = name.dropFirst("dense_".count).prefix { $0 != "/" }
            guard digits.first != "0",
                digits.allSatisfy({ ("0"..."9").contains($0) }),
                let index = Int(digits), index < 1000,
                name.dropFirst("dense_".count + digits.count).first == "/"
            else { continue }
            layers = max(layers, index + 1)
        }
        let units = recurrent[0]
        let config = ModelConfig(
            vocabularySize: embedding[0], embeddingWidth: embedding[1],
            sequenceLength: sequenceLength, lstmUnits: units,
            auxFeatures: first[0] - units, denseUnits: first[1],
            denseLayers: layers)
        guard config.invalidSizes.isEmpty else {
            throw DataError(
                "\(path): the tensors imply impossible sizes: "
                    + config.invalidSizes.joined(separator: ", "))
        }
        return config
    }

    /// Copies `tensors` into `model`, requiring exactly the model's names
    /// with exactly its shapes.
    static func load(
        _ tensors: [(name: String, array: HostArray)], path: String,
        into model: HeadlineModel
    ) throws {
        let expected = Set(model.layout.entries.map(\.name))
        let extra = tensors.map(\.name).filter { !expected.contains($0) }
        guard extra.isEmpty else {
            throw DataError(
                "\(path): unexpected tensor(s) "
                    + extra.map { "'\($0)'" }.joined(separator: ", ")
                    + "; expected only the model's weights: "
                    + model.layout.entries.map(\.name).joined(separator: ", "))
        }
        for entry in model.layout.entries {
            guard let found = tensors.first(where: { $0.name == entry.name })
            else {
                throw DataError(
                    "\(path): missing tensor '\(entry.name)' "
                        + "(expected shape \(entry.shape))")
            }
            guard found.array.shape == entry.shape else {
                throw DataError(
                    "\(path): tensor '\(entry.name)' has shape "
                        + "\(found.array.shape), expected \(entry.shape)")
            }
            let values = found.array.floats()
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw DataError(
                    "\(path): tensor '\(entry.name)' element \(bad) is "
                        + "\(values[bad]); weights must be finite")
            }
            model.parameters.replaceSubrange(entry.range, with: values)
        }
    }
}
