import XCTest

@testable import Network

/// `defersEmbeddingRows`: the backward pass stops before the embedding
/// rows' product, and the caller computes it in parts, on this replica or
/// on another with the same weights. Every comparison here is bit for bit:
/// the parts must give exactly what one pass gives, or replicas that
/// share the work would drift apart.
final class DeferredRowsTests: XCTestCase {
    /// E = 40 has a partial 16-column panel; 14 rows of T = 30 over V =
    /// 600 give a few hundred distinct ids, so whole passes are tiled as
    /// packed products (at least 96 rows) while small parts are not.
    let config = ModelConfig(
        vocabularySize: 600, embeddingWidth: 40, sequenceLength: 30,
        lstmUnits: 5, auxFeatures: 3, denseUnits: 6, denseLayers: 2)

    private func model(seed: UInt64) -> HeadlineModel {
        let model = HeadlineModel(config: config)
        Initializers.kerasDefaults(
            &model.parameters, layout: model.layout, seed: seed)
        model.scattersEmbeddingGradient = false
        return model
    }

    private func randomBatch(rows: Int, seed: UInt64) -> Batch {
        var rng = SeededGenerator(seed: seed)
        return RandomBatch(config, rows: rows, rng: &rng) { rng in
            Float(rng.next() % 2)
        }.batch
    }

    private func pass(_ model: HeadlineModel, _ batch: Batch) {
        model.zeroGradients()
        model.forward(batch)
        model.backward(
            labels: batch.labels, mainWeight: 1, auxWeight: 0.2,
            scale: 1 / 14)
    }

    func testPartsGiveTheRowsOfOnePass() {
        let batch = randomBatch(rows: 14, seed: 31)
        let whole = model(seed: 4)
        pass(whole, batch)
        let expected = Array(whole.embeddingRowGradients)
        let dense = Array(whole.gradients)
        let n = whole.touchedEmbeddingRows.count
        XCTAssertGreaterThan(n, 200, "too few rows for packed tiles")
        XCTAssertTrue(expected.contains { $0 != 0 })

        let deferred = model(seed: 4)
        deferred.defersEmbeddingRows = true
        // A replica that computes some of the parts from the projection
        // gradient the deferring one left.
        let other = model(seed: 4)
        other.defersEmbeddingRows = true
        pass(other, batch)
        // And one whose share of the batch was empty, as a rank's can be.
        let idle = model(seed: 4)
        idle.defersEmbeddingRows = true
        pass(
            idle,
            Batch(
                capacity: 1, sequenceLength: config.sequenceLength,
                auxFeatures: config.auxFeatures))
        pass(deferred, batch)
        XCTAssertEqual(Array(deferred.gradients), dense)
        XCTAssertEqual(
            Array(deferred.touchedEmbeddingRows),
            Array(whole.touchedEmbeddingRows))
        let e = config.embeddingWidth
        let projection = Array(deferred.projectionGradients)
        XCTAssertEqual(projection.count, n * 4 * config.lstmUnits)
        // Splits of every kind: one part, parts shorter than a micro-tile
        // row group, uneven parts, and parts on both sides of the packed
        // threshold.
        let splits: [[Int]] = [
            [n], [1, 5, 7, n - 13], [96, n - 96], [100, 3, n - 103],
            Array(repeating: 32, count: n / 32) + [n % 32],
        ]
        for (index, split) in splits.enumerated() {
            let out = UnsafeMutablePointer(
                mutating: deferred.embeddingRowGradients.baseAddress!)
            out.update(repeating: .nan, count: n * e)
            var start = 0
            for (part, count) in split.enumerated() where count > 0 {
                let rows = start..<(start + count)
                let replica = [deferred, other, idle][part % 3]
                projection.withUnsafeBufferPointer { p in
                    replica.embeddingRowGradients(
                        rows, projection: p.baseAddress!,
                        into: out + start * e)
                }
                start += count
            }
            XCTAssertEqual(start, n)
            XCTAssertEqual(
                Array(deferred.embeddingRowGradients), expected,
                "split \(index): \(split)")
        }
    }

    /// In a deferred pass the projection gradient is handed out as soon
    /// as it is final, before the LSTM's weight gradients are computed
    /// (other processes start on the rows meanwhile), and the dense
    /// gradients are final when `whenDenseReady` runs, as without
    /// deferring.
    func testTheProjectionIsReadyBeforeTheWeightGradients() {
        let batch = randomBatch(rows: 6, seed: 12)
        let deferred = model(seed: 3)
        deferred.defersEmbeddingRows = true
        let kernel = deferred.layout["lstm/lstm_cell/kernel"].range
        deferred.zeroGradients()
        deferred.forward(batch)
        var atProjection: [Float] = []
        var kernelAtProjection: [Float] = []
        var projectionCalls = 0, denseCalls = 0
        deferred.backward(
            labels: batch.labels, mainWeight: 1, auxWeight: 0.2, scale: 1,
            whenProjectionReady: {
                projectionCalls += 1
                atProjection = Array(deferred.projectionGradients)
                kernelAtProjection = Array(deferred.gradients[kernel])
            },
            whenDenseReady: { denseCalls += 1 })
        XCTAssertEqual(projectionCalls, 1)
        XCTAssertEqual(denseCalls, 1)
        XCTAssertEqual(atProjection, Array(deferred.projectionGradients))
        XCTAssertTrue(atProjection.contains { $0 != 0 })
        XCTAssertFalse(kernelAtProjection.contains { $0 != 0 })
        XCTAssertTrue(deferred.gradients[kernel].contains { $0 != 0 })
    }

    /// A deferred pass says where the rows go and computes none of them.
    func testADeferredPassLeavesTheRowsToTheCaller() {
        let batch = randomBatch(rows: 3, seed: 8)
        let deferred = model(seed: 2)
        deferred.defersEmbeddingRows = true
        deferred.embeddingGradientOutput = nil
        pass(deferred, batch)
        let rows = deferred.embeddingRowGradients
        XCTAssertEqual(
            rows.count,
            deferred.touchedEmbeddingRows.count
                * config.embeddingWidth)
        // The rows are where the caller is to write them: the model's own
        // scratch here, which the pass left as it was (zeros on a first
        // pass), not the product.
        XCTAssertFalse(rows.contains { $0 != 0 })
    }
}
