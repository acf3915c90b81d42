import XCTest

@testable import Network

/// `backward`'s `whenDenseReady`: called once per pass, when every
/// gradient but the embedding table's is already final, so that a caller
/// may start reducing them while the rows are computed.
final class DenseReadyTests: XCTestCase {
    func testDenseGradientsAreFinalWhenTheHookRuns() {
        var rng = SeededGenerator(seed: 9)
        let config = ModelConfig(
            vocabularySize: 40, embeddingWidth: 6, sequenceLength: 5,
            lstmUnits: 3, auxFeatures: 2, denseUnits: 4, denseLayers: 2)
        let model = HeadlineModel(config: config)
        Initializers.kerasDefaults(
            &model.parameters, layout: model.layout, seed: 2)
        let batch = RandomBatch(config, rows: 4, rng: &rng) { rng in
            Float(rng.next() % 2)
        }.batch
        let dense = model.layout.denseBlock
        model.zeroGradients()
        model.forward(batch)
        var calls = 0
        var atHook: [Float] = []
        var rowsAtHook: [Float] = []
        model.backward(
            labels: batch.labels, mainWeight: 1, auxWeight: 0.2, scale: 0.25
        ) {
            calls += 1
            atHook = Array(model.gradients[dense])
            rowsAtHook = Array(model.embeddingRowGradients)
        }
        XCTAssertEqual(calls, 1)
        // Exactly the values the pass ends with, and not all zero.
        XCTAssertEqual(atHook, Array(model.gradients[dense]))
        XCTAssertTrue(atHook.contains { $0 != 0 })
        // The rows come after the hook: they differ from what the buffer
        // held when it ran.
        XCTAssertNotEqual(rowsAtHook, Array(model.embeddingRowGradients))
    }

    /// A rank whose share of the batch is empty still reaches the point
    /// where the other ranks start their reductions.
    func testTheHookRunsOnAPassWithoutRows() {
        let config = ModelConfig(
            vocabularySize: 10, embeddingWidth: 2, sequenceLength: 3,
            lstmUnits: 2, auxFeatures: 1, denseUnits: 2, denseLayers: 1)
        let model = HeadlineModel(config: config)
        model.forward(Batch(capacity: 1, sequenceLength: 3, auxFeatures: 1))
        var calls = 0
        model.backward(labels: [], mainWeight: 1, auxWeight: 0.2, scale: 1) {
            calls += 1
        }
        XCTAssertEqual(calls, 1)
    }
}
