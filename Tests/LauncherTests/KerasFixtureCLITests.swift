import Foundation
import Network
import XCTest

/// The Keras reference fixtures, reproduced through the command line:
/// `train`, `predict` and `evaluate` on each fixture folder as it is.
final class KerasFixtureCLITests: XCTestCase {
    /// Three RMSprop steps on the whole folder as one batch, from the
    /// fixture's weights, match Keras' weights after step 3 (with the
    /// embedding gradient applied densely, as this trainer does).
    /// Tolerance per element: 2e-6 + 1e-7·|w|.
    func testTrainThreeStepsReproducesKeras() throws {
        for name in Fixtures.names {
            let folder = try Fixtures.folder(name)
            let rows = try XCTUnwrap(Fixtures.config(name)["B"])
            let dir = try temporaryDirectory(for: self)
            let saved = dir + "/trained.safetensors"
            let result = try CLI.run([
                "train", "--data", folder,
                "--init-weights", folder + "/weights.safetensors",
                "--no-shuffle", "--epochs", "3", "--batch-size", "\(rows)",
                "--save-weights", saved,
            ])
            XCTAssertEqual(result.status, 0, result.transcript)
            XCTAssertFalse(result.signaled, result.transcript)
            let trained = try readTensors(saved)
            let expected = try readTensors(
                folder + "/after_step3_densegrad.safetensors")
            XCTAssertEqual(trained.keys.sorted(), expected.keys.sorted(), name)
            for (tensor, want) in expected {
                let got = try XCTUnwrap(trained[tensor], "\(name) \(tensor)")
                XCTAssertEqual(got.shape, want.shape, "\(name) \(tensor)")
                XCTAssertEqual(got.elementType, .float32, "\(name) \(tensor)")
                for (k, (g, w)) in zip(got.floats(), want.floats()).enumerated()
                {
                    let tolerance = 2e-6 + 1e-7 * abs(w)
                    XCTAssertLessThanOrEqual(
                        abs(g - w), tolerance,
                        "\(name) \(tensor)[\(k)]: \(g) vs Keras \(w)")
                }
            }
        }
    }

    /// `predict` writes [N, 2] float32: main_output, then aux_output.
    func testPredictReproducesKerasOutputs() throws {
        for name in Fixtures.names {
            let folder = try Fixtures.folder(name)
            let dir = try temporaryDirectory(for: self)
            let out = dir + "/predictions.npy"
            let result = try CLI.run([
                "predict", "--weights", folder + "/weights.safetensors",
                "--data", folder, "--out", out,
            ])
            XCTAssertEqual(result.status, 0, result.transcript)
            let predictions = try NPY.read(contentsOf: out)
            let main = try NPY.read(contentsOf: folder + "/main_output.npy")
            let aux = try NPY.read(contentsOf: folder + "/aux_output.npy")
            let rows = main.count
            XCTAssertEqual(predictions.shape, [rows, 2], name)
            XCTAssertEqual(predictions.elementType, .float32, name)
            guard predictions.shape == [rows, 2] else { continue }
            let p = predictions.floats()
            for (r, (m, a)) in zip(main.floats(), aux.floats()).enumerated() {
                XCTAssertLessThanOrEqual(
                    abs(p[2 * r] - m), 1e-5 * abs(m),
                    "\(name) row \(r) main_output: \(p[2 * r]) vs \(m)")
                XCTAssertLessThanOrEqual(
                    abs(p[2 * r + 1] - a), 1e-5 * abs(a),
                    "\(name) row \(r) aux_output: \(p[2 * r + 1]) vs \(a)")
            }
        }
    }

    /// `evaluate --json`: one strict JSON object whose losses are Keras'.
    func testEvaluateJSONMatchesKerasLosses() throws {
        for name in Fixtures.names {
            let folder = try Fixtures.folder(name)
            let result = try CLI.run([
                "evaluate", "--weights", folder + "/weights.safetensors",
                "--data", folder, "--json",
            ])
            XCTAssertEqual(result.status, 0, result.transcript)
            let object = try XCTUnwrap(
                try JSONSerialization.jsonObject(
                    with: Data(result.stdout.utf8)) as? [String: Any],
                result.transcript)
            let keras = try readJSONObject(folder + "/losses.json")
            for (ours, theirs) in [
                ("loss", "total_loss"),
                ("main_output_loss", "main_output_loss"),
                ("aux_output_loss", "aux_output_loss"),
            ] {
                let got = try XCTUnwrap(
                    object[ours] as? Double, "\(name): no \(ours)")
                let want = try XCTUnwrap(keras[theirs] as? Double)
                XCTAssertLessThanOrEqual(
                    abs(got - want), 1e-5 * abs(want),
                    "\(name) \(ours): \(got) vs Keras \(want)")
            }
            for key in [
                "main_output_accuracy", "aux_output_accuracy",
                "main_output_auc", "aux_output_auc",
            ] {
                XCTAssertNotNil(object[key] as? Double, "\(name): no \(key)")
            }
        }
    }
}
