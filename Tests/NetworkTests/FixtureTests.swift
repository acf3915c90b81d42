import Foundation
import XCTest

@testable import Network

/// Reading the Keras reference files that the trainer is tested against.
final class FixtureTests: XCTestCase {
    let folders = ["tiny", "small", "saturated"]
    let npyFiles = [
        "main_input", "aux_input", "labels", "lstm_out", "main_output",
        "aux_output", "main_logits", "aux_logits", "embedding_grad_slices",
    ]
    let safetensorsFiles = [
        "weights", "gradients", "after_step1", "after_step3",
        "velocity_after_step1", "velocity_after_step3",
        "after_step1_densegrad", "after_step3_densegrad",
        "velocity_after_step1_densegrad", "velocity_after_step3_densegrad",
    ]
    let weightNames = [
        "aux_output/bias", "aux_output/kernel", "dense/bias", "dense/kernel",
        "dense_1/bias", "dense_1/kernel", "dense_2/bias", "dense_2/kernel",
        "embedding/embeddings", "lstm/lstm_cell/bias",
        "lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel",
        "main_output/bias", "main_output/kernel",
    ]

    /// Shapes from the tiny/ configuration: V 50, E 8, T 7, U 4, A 5, H 6,
    /// B 3.
    func testTinyShapesAndTypes() throws {
        func npy(_ name: String) throws -> HostArray {
            try NPY.read(contentsOf: fixtureURL("tiny", name + ".npy").path)
        }
        let input = try npy("main_input")
        XCTAssertEqual(input.elementType, .int32)
        XCTAssertEqual(input.shape, [3, 7])
        let ids = try XCTUnwrap(input.integers())
        XCTAssertTrue(ids.allSatisfy { (0..<50).contains($0) })
        // "In every batch, sequence 0 starts with a run of 0s."
        XCTAssertEqual(ids[0], 0)
        XCTAssertEqual(try npy("aux_input").shape, [3, 5])
        XCTAssertEqual(try npy("labels").shape, [3, 1])
        XCTAssertEqual(try npy("lstm_out").shape, [3, 4])
        XCTAssertEqual(try npy("embedding_grad_slices").shape, [3, 7, 8])
        let output = try npy("main_output")
        XCTAssertEqual(output.elementType, .float32)
        XCTAssertTrue(output.floats().allSatisfy { $0 > 0 && $0 < 1 })

        let weights = try SafeTensors.read(
            contentsOf: fixtureURL("tiny", "weights.safetensors").path)
        XCTAssertEqual(weights.map(\.name).sorted(), weightNames)
        let shapes = Dictionary(
            uniqueKeysWithValues: weights.map { ($0.name, $0.array.shape) })
        XCTAssertEqual(shapes["embedding/embeddings"], [50, 8])
        XCTAssertEqual(shapes["lstm/lstm_cell/kernel"], [8, 16])
        XCTAssertEqual(shapes["lstm/lstm_cell/recurrent_kernel"], [4, 16])
        XCTAssertEqual(shapes["lstm/lstm_cell/bias"], [16])
        XCTAssertEqual(shapes["dense/kernel"], [9, 6])
        XCTAssertEqual(shapes["main_output/kernel"], [6, 1])
        XCTAssertEqual(shapes["aux_output/bias"], [1])
        XCTAssertTrue(weights.allSatisfy { $0.array.elementType == .float32 })
        // The forget-gate block of the LSTM bias is 1.0 plus noise.
        let bias = try XCTUnwrap(
            weights.first { $0.name == "lstm/lstm_cell/bias" }
        ).array.floats()
        XCTAssertTrue(bias[4..<8].allSatisfy { $0 > 0.7 && $0 < 1.3 })
        let metadata = try SafeTensors.readMetadata(
            contentsOf: fixtureURL("tiny", "weights.safetensors").path)
        XCTAssertNotNil(metadata["format"])
    }

    /// Every fixture, in every folder, decodes to the same values that
    /// numpy (and a stdlib safetensors reader) find in it.
    func testEveryFixtureMatchesNumpy() throws {
        var ours: [String: String] = [:]
        var paths: [String] = []
        for folder in folders {
            for name in npyFiles {
                let path = fixtureURL(folder, name + ".npy").path
                let array = try NPY.read(contentsOf: path)
                ours[path] = describe(array)
                paths.append(path)
            }
            for name in safetensorsFiles {
                let path = fixtureURL(folder, name + ".safetensors").path
                for (tensor, array) in try SafeTensors.read(contentsOf: path) {
                    ours[path + "#" + tensor] = describe(array)
                }
                paths.append(path)
            }
        }
        let output = try runPython(
            """
            import sys, json, struct
            import numpy as np
            out = {}
            def describe(a):
                kind = {'<f4': 'float32', '<i4': 'int32', '<f8': 'float64',
                        '<i8': 'int64'}[a.dtype.str]
                bits = a.reshape(-1).view('<u%d' % a.dtype.itemsize)
                return '%s %s %s' % (kind, list(a.shape), bits.tolist())
            codes = {'F32': '<f4', 'F64': '<f8', 'I32': '<i4', 'I64': '<i8'}
            for path in sys.argv[1:]:
                if path.endswith('.npy'):
                    out[path] = describe(np.load(path))
                    continue
                raw = open(path, 'rb').read()
                (n,) = struct.unpack('<Q', raw[:8])
                header = json.loads(raw[8:8 + n])
                header.pop('__metadata__', None)
                for name, info in header.items():
                    b, e = info['data_offsets']
                    a = np.frombuffer(raw[8 + n + b:8 + n + e],
                                      dtype=codes[info['dtype']])
                    out[path + '#' + name] = describe(
                        a.reshape(info['shape']))
            print(json.dumps(out))
            """, paths)
        let theirs =
            try JSONSerialization.jsonObject(
                with: Data(output.utf8)) as? [String: String]
        XCTAssertEqual(theirs?.count, ours.count)
        XCTAssertEqual(theirs, ours)
        XCTAssertGreaterThan(ours.count, 3 * (9 + 10 * 14) - 1)
    }

    private func describe(_ array: HostArray) -> String {
        let bits = bitPatterns(array).map(String.init).joined(separator: ", ")
        return "\(array.elementType) \(array.shape) [\(bits)]"
    }
}
