/// The sizes of the headline model. Every size is an option; the defaults
/// are those of the Keras functional-API example.
public struct ModelConfig: Equatable, Sendable, Codable {
    /// V: number of token ids; valid ids are 0..<V.
    public var vocabularySize: Int
    /// E: width of one embedding row.
    public var embeddingWidth: Int
    /// T: time steps per sequence.
    public var sequenceLength: Int
    /// U: LSTM units.
    public var lstmUnits: Int
    /// A: auxiliary input features.
    public var auxFeatures: Int
    /// H: width of each hidden dense layer.
    public var denseUnits: Int
    /// Number of hidden dense layers between the concatenation and
    /// `main_output`.
    public var denseLayers: Int

    /// Creates a configuration; the defaults are the seed model's sizes.
    public init(
        vocabularySize: Int = 10000, embeddingWidth: Int = 512,
        sequenceLength: Int = 100, lstmUnits: Int = 32, auxFeatures: Int = 5,
        denseUnits: Int = 64, denseLayers: Int = 3
    ) {
        self.vocabularySize = vocabularySize
        self.embeddingWidth = embeddingWidth
        self.sequenceLength = sequenceLength
        self.lstmUnits = lstmUnits
        self.auxFeatures = auxFeatures
        self.denseUnits = denseUnits
        self.denseLayers = denseLayers
    }

    /// Names of the sizes that are not positive, empty when all are valid.
    public var invalidSizes: [String] {
        var bad: [String] = []
        if vocabularySize < 1 {
            bad.append("vocabulary size \(vocabularySize)")
        }
        if embeddingWidth < 1 {
            bad.append("embedding width \(embeddingWidth)")
        }
        if sequenceLength < 1 {
            bad.append("sequence length \(sequenceLength)")
        }
        if lstmUnits < 1 { bad.append("LSTM units \(lstmUnits)") }
        if auxFeatures < 0 { bad.append("aux features \(auxFeatures)") }
        if denseUnits < 1 { bad.append("dense units \(denseUnits)") }
        if denseLayers < 1 { bad.append("dense layers \(denseLayers)") }
        return bad
    }

    /// The number of weights, or nil when it does not fit in an `Int`
    /// (sizes come from the command line and from file headers, so an
    /// absurd size must be reported, not trapped on).
    public var parameterCount: Int? {
        let v = vocabularySize, e = embeddingWidth, u = lstmUnits
        let a = auxFeatures, h = denseUnits
        let terms: [[Int]] = [
            [v, e], [e, 4, u], [u, 4, u], [4, u], [u], [1],
            [u + a, h], [h], [max(denseLayers - 1, 0), h + 1, h], [h], [1],
        ]
        var total = 0
        for factors in terms {
            var product = 1
            for f in factors {
                let (p, overflow) = product.multipliedReportingOverflow(by: f)
                if overflow { return nil }
                product = p
            }
            let (sum, overflow) = total.addingReportingOverflow(product)
            if overflow { return nil }
            total = sum
        }
        return total
    }

    /// Keras' name of hidden dense layer `index` (0-based): `dense`,
    /// `dense_1`, `dense_2`, ...
    public static func denseName(_ index: Int) -> String {
        index == 0 ? "dense" : "dense_\(index)"
    }
}
