import XCTest

@testable import Network

/// The vectorised LSTM loops at unit counts the fixtures do not reach:
/// the fixtures and the random gradient check use U ≤ 8, which only runs
/// the partial-vector path, while the default model has U = 32. These
/// sizes run whole 16-lane chunks (U = 16, 32) and whole chunks followed by
/// a partial one (U = 17, 33), forward and backward, against the Double
/// `ReferenceModel`: the loss to 1e-5 relative, and sampled gradients
/// against central differences with GradientCheckTests' tolerance.
final class WideLSTMTests: XCTestCase {
    func testWideUnitCounts() {
        var rng = SeededGenerator(seed: 7)
        for (u, e, t, rows) in [
            (16, 6, 3, 3), (17, 5, 3, 2), (32, 4, 2, 2),
            (33, 3, 2, 2),
        ] {
            let config = ModelConfig(
                vocabularySize: 13, embeddingWidth: e, sequenceLength: t,
                lstmUnits: u, auxFeatures: 2, denseUnits: 3, denseLayers: 1)
            check(config, rows: rows, rng: &rng)
        }
    }

    private func check(
        _ config: ModelConfig, rows: Int, rng: inout SeededGenerator
    ) {
        let model = HeadlineModel(config: config)
        // Small weights: U inputs per gate, so keep z of order 1.
        let spread = 1.2 / Double(config.lstmUnits).squareRoot()
        for k in 0..<model.parameters.count {
            model.parameters[k] = Float((rng.nextUnit() * 2 - 1) * spread)
        }
        let random = RandomBatch(config, rows: rows, rng: &rng) { rng in
            rng.next() % 2 == 0 ? 0 : 1
        }
        let batch = random.batch
        let allIds = random.ids, allAux = random.aux, labels = random.labels
        let scale: Float = 1 / Float(rows)
        model.zeroGradients()
        model.forward(batch)
        model.backward(
            labels: batch.labels, mainWeight: 1, auxWeight: 0.2, scale: scale)
        let sums = model.lossSums(labels: batch.labels)

        let reference = ReferenceModel(config)
        var w = model.parameters.map(Double.init)
        func loss() -> Double {
            reference.loss(
                w, ids: allIds, aux: allAux, labels: labels, rows: rows,
                mainWeight: 1, auxWeight: 0.2, scale: Double(scale))
        }
        let expected = loss()
        let got = (sums.mainLoss + 0.2 * sums.auxLoss) * Double(scale)
        XCTAssertEqual(
            got, expected, accuracy: 1e-5 * abs(expected),
            "U = \(config.lstmUnits): loss")

        // 120 parameters, a third of them in the LSTM's recurrent kernel
        // and bias, whose gradients go through every vectorised loop.
        let recurrent = model.layout["lstm/lstm_cell/recurrent_kernel"].range
        let bias = model.layout["lstm/lstm_cell/bias"].range
        var indices: [Int] = []
        for n in 0..<120 {
            let pool =
                n % 3 == 0
                ? recurrent
                : n % 3 == 1
                    ? bias
                    : 0..<w.count
            indices.append(
                pool.lowerBound + Int(rng.next() % UInt64(pool.count)))
        }
        let step = 1e-5
        for k in indices {
            let saved = w[k]
            w[k] = saved + step
            let up = loss()
            w[k] = saved - step
            let down = loss()
            w[k] = saved
            let numeric = (up - down) / (2 * step)
            let analytic = Double(model.gradients[k])
            XCTAssertEqual(
                analytic, numeric, accuracy: 2e-5 + 1e-3 * abs(numeric),
                "U = \(config.lstmUnits): parameter \(k)")
        }
    }
}
