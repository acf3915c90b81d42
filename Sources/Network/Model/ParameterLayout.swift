/// Where each named weight lives inside the one flat parameter buffer.
///
/// The gradient buffer and the optimizer's velocity use the same layout, so
/// one offset serves all three, and a single all-reduce covers every
/// gradient.
public struct ParameterLayout: Sendable {
    /// One weight: Keras' variable path, its shape and its place.
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
        public var range: Range<Int> { offset..<(offset + count) }
    }

    /// Weights in Keras' order.
    public let entries: [Entry]
    /// Total number of floats.
    public let count: Int
    private let index: [String: Int]

    /// The layout of the model with sizes `config`.
    ///
    /// The embedding comes last, so every other gradient forms one
    /// contiguous block in front of it that can be reduced on its own.
    public init(_ config: ModelConfig) {
        let v = config.vocabularySize, e = config.embeddingWidth
        let u = config.lstmUnits, a = config.auxFeatures
        let h = config.denseUnits
        var shapes: [(String, [Int])] = [
            ("lstm/lstm_cell/kernel", [e, 4 * u]),
            ("lstm/lstm_cell/recurrent_kernel", [u, 4 * u]),
            ("lstm/lstm_cell/bias", [4 * u]),
            ("aux_output/kernel", [u, 1]),
            ("aux_output/bias", [1]),
        ]
        for layer in 0..<config.denseLayers {
            let name = ModelConfig.denseName(layer)
            shapes.append(("\(name)/kernel", [layer == 0 ? u + a : h, h]))
            shapes.append(("\(name)/bias", [h]))
        }
        shapes.append(("main_output/kernel", [h, 1]))
        shapes.append(("main_output/bias", [1]))
        shapes.append(("embedding/embeddings", [v, e]))
        var offset = 0
        var built: [Entry] = []
        for (name, shape) in shapes {
            let entry = Entry(name: name, shape: shape, offset: offset)
            built.append(entry)
            offset += entry.count
        }
        entries = built
        count = offset
        index = Dictionary(
            uniqueKeysWithValues: built.enumerated().map { ($1.name, $0) })
    }

    /// The entry named `name`, or nil.
    public func entry(_ name: String) -> Entry? {
        index[name].map { entries[$0] }
    }

    /// The entry named `name`; the name must be one of this layout's.
    public subscript(name: String) -> Entry {
        guard let found = entry(name) else {
            preconditionFailure("no weight named \(name)")
        }
        return found
    }

    /// The range of every weight except the embedding: one block at the
    /// front of the buffer.
    public var denseBlock: Range<Int> {
        0..<self["embedding/embeddings"].offset
    }
}
