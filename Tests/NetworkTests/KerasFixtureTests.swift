import Foundation
import XCTest

@testable import Network

/// The model against numbers produced by real Keras (3.15.1, TensorFlow
/// backend) for the same weights and inputs: see Fixtures/README.md.
/// Tolerances are those the fixtures' README suggests for float32.
final class KerasFixtureTests: XCTestCase {
    static let folders = ["tiny", "small", "saturated"]

    /// A fixture folder loaded into a model and a batch.
    struct Loaded {
        let model: HeadlineModel
        let batch: Batch
        let folder: String
    }

    func load(_ folder: String) throws -> Loaded {
        let weights = try SafeTensors.read(
            contentsOf: fixtureURL(folder, "weights.safetensors").path)
        let ids = try NPY.read(
            contentsOf: fixtureURL(folder, "main_input.npy").path)
        let aux = try NPY.read(
            contentsOf: fixtureURL(folder, "aux_input.npy").path)
        let labels = try NPY.read(
            contentsOf: fixtureURL(folder, "labels.npy").path)
        let shape = { (name: String) in
            weights.first { $0.name == name }!.array.shape
        }
        let u = shape("lstm/lstm_cell/recurrent_kernel")[0]
        let config = ModelConfig(
            vocabularySize: shape("embedding/embeddings")[0],
            embeddingWidth: shape("embedding/embeddings")[1],
            sequenceLength: ids.shape[1], lstmUnits: u,
            auxFeatures: aux.shape[1], denseUnits: shape("dense/kernel")[1],
            denseLayers: 3)
        let model = HeadlineModel(config: config)
        XCTAssertEqual(weights.count, model.layout.entries.count)
        for (name, array) in weights {
            let entry = model.layout[name]
            XCTAssertEqual(array.shape, entry.shape, name)
            model.parameters.replaceSubrange(entry.range, with: array.floats())
        }
        let rows = ids.shape[0]
        var batch = Batch(
            capacity: rows, sequenceLength: config.sequenceLength,
            auxFeatures: config.auxFeatures)
        let idValues = ids.integers()!.map { Int32($0) }
        let auxValues = aux.floats(), labelValues = labels.floats()
        for r in 0..<rows {
            let t = config.sequenceLength, a = config.auxFeatures
            Array(idValues[(r * t)..<(r * t + t)]).withUnsafeBufferPointer {
                i in
                Array(auxValues[(r * a)..<(r * a + a)])
                    .withUnsafeBufferPointer { x in
                        batch.append(ids: i, aux: x, label: labelValues[r])
                    }
            }
        }
        return Loaded(model: model, batch: batch, folder: folder)
    }

    func expected(_ folder: String, _ file: String) throws -> [Float] {
        try NPY.read(contentsOf: fixtureURL(folder, file).path).floats()
    }

    func tensors(_ folder: String, _ file: String) throws -> [String: [Float]] {
        let list = try SafeTensors.read(
            contentsOf: fixtureURL(folder, file).path)
        return Dictionary(
            uniqueKeysWithValues: list.map {
                ($0.name, $0.array.floats())
            })
    }

    func losses(_ folder: String) throws -> [String: Any] {
        let data = try Data(contentsOf: fixtureURL(folder, "losses.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// Asserts every element within `relative` × the larger magnitude of
    /// the expected tensor, per element floor `floor`.
    func assertClose(
        _ got: [Float], _ want: [Float], relative: Double, floor: Double = 0,
        _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        for k in 0..<min(got.count, want.count) {
            let scale = max(abs(Double(want[k])), floor)
            let error = abs(Double(got[k]) - Double(want[k]))
            if error > relative * scale {
                XCTFail(
                    "\(what)[\(k)]: got \(got[k]), Keras \(want[k]) "
                        + "(error \(error), allowed \(relative * scale))",
                    file: file, line: line)
                return
            }
        }
    }

    // MARK: Forward

    func testForwardMatchesKeras() throws {
        for folder in Self.folders {
            let f = try load(folder)
            f.model.forward(f.batch)
            let rows = f.batch.count
            let main = (0..<rows).map { f.model.mainProbability($0) }
            let aux = (0..<rows).map { f.model.auxProbability($0) }
            let logits = (0..<rows).map { f.model.logits($0) }
            // Outputs, logits and lstm_out within 1e-5 relative, elementwise.
            assertClose(
                f.model.lstmOutput(), try expected(folder, "lstm_out.npy"),
                relative: 1e-5, "\(folder) lstm_out")
            assertClose(
                logits.map(\.main), try expected(folder, "main_logits.npy"),
                relative: 1e-5, "\(folder) main_logits")
            assertClose(
                logits.map(\.aux), try expected(folder, "aux_logits.npy"),
                relative: 1e-5, "\(folder) aux_logits")
            assertClose(
                main, try expected(folder, "main_output.npy"), relative: 1e-5,
                "\(folder) main_output")
            assertClose(
                aux, try expected(folder, "aux_output.npy"), relative: 1e-5,
                "\(folder) aux_output")
        }
    }

    func testLossesMatchKeras() throws {
        for folder in Self.folders {
            let f = try load(folder)
            f.model.forward(f.batch)
            let sums = f.model.lossSums(labels: f.batch.labels)
            let n = Double(f.batch.count)
            let want = try losses(folder)
            let main = want["main_output_loss"] as! Double
            let aux = want["aux_output_loss"] as! Double
            let total = want["total_loss"] as! Double
            XCTAssertEqual(sums.mainLoss / n, main, accuracy: 1e-5 * abs(main))
            XCTAssertEqual(sums.auxLoss / n, aux, accuracy: 1e-5 * abs(aux))
            let ours = sums.mainLoss / n + 0.2 * sums.auxLoss / n
            XCTAssertEqual(ours, total, accuracy: 1e-5 * abs(total), folder)
            // The per-sample values too, each within 1e-5 relative.
            let perSample = want["per_sample"] as! [String: [Double]]
            for r in 0..<f.batch.count {
                let (zm, za) = f.model.logits(r)
                let y = f.batch.labels[r]
                let lm = Double(
                    Activations.binaryCrossEntropy(logit: zm, label: y))
                let la = Double(
                    Activations.binaryCrossEntropy(logit: za, label: y))
                XCTAssertEqual(
                    lm, perSample["main_output"]![r],
                    accuracy: 1e-5 * abs(perSample["main_output"]![r]))
                XCTAssertEqual(
                    la, perSample["aux_output"]![r],
                    accuracy: 1e-5 * abs(perSample["aux_output"]![r]))
            }
        }
    }

    // MARK: Backward

    func testGradientsMatchKeras() throws {
        for folder in Self.folders {
            let f = try load(folder)
            f.model.zeroGradients()
            f.model.forward(f.batch)
            f.model.backward(
                labels: f.batch.labels, mainWeight: 1, auxWeight: 0.2,
                scale: 1 / Float(f.batch.count))
            let want = try tensors(folder, "gradients.safetensors")
            XCTAssertEqual(want.count, f.model.layout.entries.count)
            for entry in f.model.layout.entries {
                let expected = try XCTUnwrap(want[entry.name], entry.name)
                let got = Array(f.model.gradients[entry.range])
                // 1e-6 absolute + 1e-4 × the tensor's largest magnitude.
                let largest = expected.map { abs(Double($0)) }.max() ?? 0
                let allowed = 1e-6 + 1e-4 * largest
                for k in 0..<expected.count {
                    let error = abs(Double(got[k]) - Double(expected[k]))
                    if error > allowed {
                        XCTFail(
                            "\(folder) d\(entry.name)[\(k)]: got \(got[k]), "
                                + "Keras \(expected[k]), allowed \(allowed)")
                        break
                    }
                }
            }
        }
    }

    // MARK: RMSprop

    func testRMSpropStepsMatchTextbookKeras() throws {
        for folder in Self.folders {
            let f = try load(folder)
            var optimizer = RMSprop(count: f.model.layout.count)
            for step in 1...3 {
                f.model.zeroGradients()
                f.model.forward(f.batch)
                if step == 1 {
                    // train_on_batch_losses[n-1] is the loss before step n.
                    // Only step 1's is comparable: Keras' later losses
                    // follow its per-occurrence embedding update, which
                    // the textbook update deliberately does not.
                    let record =
                        (try losses(folder)["train_on_batch_losses"]
                        as! [[String: Any]])[step - 1]
                    let want = record["loss"] as! Double
                    let s = f.model.lossSums(labels: f.batch.labels)
                    let n = Double(f.batch.count)
                    let total = s.mainLoss / n + 0.2 * s.auxLoss / n
                    XCTAssertEqual(
                        total, want, accuracy: 1e-5 * abs(want),
                        "\(folder) loss before step \(step)")
                }
                f.model.backward(
                    labels: f.batch.labels, mainWeight: 1, auxWeight: 0.2,
                    scale: 1 / Float(f.batch.count))
                optimizer.apply(
                    to: &f.model.parameters, gradients: f.model.gradients)
                guard step == 1 || step == 3 else { continue }
                let weights = try tensors(
                    folder, "after_step\(step)_densegrad.safetensors")
                let velocity = try tensors(
                    folder, "velocity_after_step\(step)_densegrad.safetensors")
                for entry in f.model.layout.entries {
                    let want = try XCTUnwrap(weights[entry.name])
                    let got = Array(f.model.parameters[entry.range])
                    for k in 0..<want.count {
                        // 2e-6 + 1e-7·|w| absolute.
                        let allowed = 2e-6 + 1e-7 * abs(Double(want[k]))
                        let error = abs(Double(got[k]) - Double(want[k]))
                        if error > allowed {
                            XCTFail(
                                "\(folder) step \(step) \(entry.name)[\(k)]: "
                                    + "got \(got[k]), Keras \(want[k])")
                            break
                        }
                    }
                    let wantV = try XCTUnwrap(velocity[entry.name])
                    let gotV = Array(optimizer.velocity[entry.range])
                    // 1e-4 × the tensor's largest velocity.
                    let allowedV = 1e-4 * Double(wantV.max() ?? 0)
                    for k in 0..<wantV.count
                    where abs(Double(gotV[k]) - Double(wantV[k])) > allowedV {
                        XCTFail(
                            "\(folder) step \(step) velocity \(entry.name)"
                                + "[\(k)]: got \(gotV[k]), Keras \(wantV[k])")
                        break
                    }
                }
            }
        }
    }

    /// The Keras-backend files (per-occurrence squares) differ from the
    /// textbook ones; our update must match the textbook files, and this
    /// shows the fixtures really tell the two apart.
    func testTextbookAndKerasEmbeddingUpdatesDiffer() throws {
        let keras = try tensors("tiny", "after_step1.safetensors")
        let textbook = try tensors("tiny", "after_step1_densegrad.safetensors")
        let a = keras["embedding/embeddings"]!
        let b = textbook["embedding/embeddings"]!
        let largest = zip(a, b).map { abs(Double($0) - Double($1)) }.max()!
        XCTAssertGreaterThan(largest, 1e-4)
    }
}
