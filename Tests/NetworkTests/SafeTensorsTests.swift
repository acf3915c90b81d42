import Foundation
import XCTest

@testable import Network

/// The bytes of a .safetensors file with the given header text and data;
/// `length` overrides the header length field, for broken files.
func safetensorsFile(
    _ header: String, data: [UInt8] = [], length: UInt64? = nil
) -> [UInt8] {
    let text = Array(header.utf8)
    let n = length ?? UInt64(text.count)
    return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) }
        + text + data
}

/// The tensors as a dictionary of name to bit patterns and shape.
private func summary(_ tensors: [(name: String, array: HostArray)])
    -> [String: String]
{
    var out: [String: String] = [:]
    for (name, array) in tensors {
        out[name] =
            "\(array.elementType) \(array.shape) "
            + "\(bitPatterns(array))"
    }
    return out
}

/// The tensors that the compatibility scripts write and expect, built
/// with `formulaArray` on this side and `formula` on the Python side.
private let formulaTensors: [(name: String, type: ElementType, shape: [Int])] =
    [
        ("dense/kernel", .float32, [3, 4]), ("dense/bias", .float32, [4]),
        ("wide", .float64, [2, 2, 2]), ("ids", .int32, [5, 1]),
        ("steps", .int64, [3]), ("scalar", .float32, []),
        ("empty", .float32, [0, 3]),
    ]

private let pythonFormulaTensors =
    pythonFormula + """
        dtypes = {'float32': '<f4', 'float64': '<f8', 'int32': '<i4',
                  'int64': '<i8'}
        spec = json.loads(sys.argv[2])
        tensors = {name: formula(dtypes[t], tuple(shape))
                   for name, t, shape in spec}
        def check(loaded):
            assert sorted(loaded) == sorted(tensors), (sorted(loaded))
            for name, want in tensors.items():
                got = loaded[name]
                assert got.dtype == want.dtype, (name, got.dtype)
                assert got.shape == want.shape, (name, got.shape)
                assert np.array_equal(got, want), name

        """

final class SafeTensorsTests: XCTestCase {
    private var formulaSpec: String {
        let spec = formulaTensors.map {
            [$0.name, "\($0.type)", $0.shape] as [Any]
        }
        return String(
            decoding: try! JSONSerialization.data(withJSONObject: spec),
            as: UTF8.self)
    }

    private var formulaArrays: [(name: String, array: HostArray)] {
        formulaTensors.map { ($0.name, formulaArray($0.type, shape: $0.shape)) }
    }

    func testRoundTripEveryTypeShapeAndMetadata() throws {
        var tensors: [(name: String, array: HostArray)] = []
        for type in ElementType.allCases {
            for shape in [[], [0], [3], [2, 3], [2, 0, 4], [2, 3, 4]] {
                tensors.append(
                    ("\(type)/\(shape)", sampleArray(type, shape: shape)))
            }
        }
        let metadata = [
            "format": "pt", "quote\"and\\slash": "line\nbreak\t\u{1}",
            "unicode": "Grüße \u{1F600}",
        ]
        let bytes = try SafeTensors.encode(tensors, metadata: metadata)
        let decoded = try SafeTensors.decode(bytes, file: "memory")
        XCTAssertEqual(decoded.map(\.name), tensors.map(\.name))
        XCTAssertEqual(summary(decoded), summary(tensors))

        let dir = try makeTemporaryDirectory(for: self)
        let path = dir + "/all.safetensors"
        try SafeTensors.write(tensors, to: path, metadata: metadata)
        let read = try SafeTensors.read(contentsOf: path)
        XCTAssertEqual(read.map(\.name), tensors.map(\.name))
        XCTAssertEqual(summary(read), summary(tensors))
        XCTAssertEqual(try SafeTensors.readMetadata(contentsOf: path), metadata)
    }

    func testNoMetadataReadsAsEmpty() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let path = dir + "/plain.safetensors"
        try SafeTensors.write(
            [("x", HostArray(shape: [1], floats: [1]))], to: path)
        XCTAssertEqual(try SafeTensors.readMetadata(contentsOf: path), [:])
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertFalse(
            String(decoding: bytes, as: UTF8.self).contains("__metadata__"))
    }

    /// The header is compact JSON padded with spaces to a multiple of 8,
    /// and the data follows in the order the tensors were given.
    func testHeaderLayout() throws {
        let tensors: [(name: String, array: HostArray)] = [
            ("z", HostArray(shape: [2], floats: [1, 2])),
            ("a", HostArray(shape: [3], int32s: [4, 5, 6])),
            ("m", HostArray(shape: [], storage: .float64([7]))),
        ]
        let bytes = try SafeTensors.encode(tensors, metadata: ["k": "v"])
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        XCTAssertEqual(n % 8, 0)
        let header = String(decoding: bytes[8..<8 + n], as: UTF8.self)
        XCTAssertEqual(
            header.trimmingCharacters(in: .whitespaces),
            #"{"__metadata__":{"k":"v"},"#
                + #""z":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
                + #""a":{"dtype":"I32","shape":[3],"data_offsets":[8,20]},"#
                + #""m":{"dtype":"F64","shape":[],"data_offsets":[20,28]}}"#)
        XCTAssertEqual(bytes.count, 8 + n + 28)
        XCTAssertEqual(
            Array(bytes[(8 + n)..<(8 + n + 8)]), littleEndianBytes([1, 2]))
    }

    /// Tensors come back ordered by data offset, not by header order; empty
    /// tensors at the same offset keep their header order.
    func testDecodeOrdersByDataOffset() throws {
        let header =
            #"{"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"#
            + #""e2":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"#
            + #""e1":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"#
            + #""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let tensors = try SafeTensors.decode(
            safetensorsFile(header, data: littleEndianBytes([1, 2, 3, 4])),
            file: "order")
        XCTAssertEqual(tensors.map(\.name), ["a", "e2", "e1", "b"])
        XCTAssertEqual(tensors[0].array.floats(), [1, 2])
        XCTAssertEqual(tensors[3].array.floats(), [3, 4])
    }

    /// Gaps between tensors are allowed (the reference library refuses
    /// them, but nothing is misread).
    func testGapsAreAllowed() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        let tensors = try SafeTensors.decode(
            safetensorsFile(header, data: littleEndianBytes([9, 5, 9])),
            file: "gap")
        XCTAssertEqual(tensors.first?.array.floats(), [5])
    }

    func testEncodeRefusesDuplicateAndReservedNames() {
        let x = HostArray(shape: [1], floats: [1])
        assertFormatError(
            try SafeTensors.encode([("w", x), ("w", x)]), file: "<encode>",
            ["'w' appears twice"])
        assertFormatError(
            try SafeTensors.encode([("__metadata__", x)]), file: "<encode>",
            ["__metadata__"])
        let dir = NSTemporaryDirectory()
        assertFormatError(
            try SafeTensors.write([("w", x), ("w", x)], to: dir + "/dup"),
            file: dir + "/dup", ["appears twice"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/dup"))
    }

    /// Against the Python `safetensors` package, which scripts/setup.sh
    /// installs. The test below checks the same against a stdlib-only
    /// reader and writer.
    func testPythonSafetensorsPackageReadsAndWritesTheSameFiles() throws {
        do {
            try runPython("import safetensors.numpy")
        } catch {
            XCTFail(
                "the Python safetensors package is not installed "
                    + "(run scripts/setup.sh): \(error)")
            return
        }
        let dir = try makeTemporaryDirectory(for: self)
        try SafeTensors.write(
            formulaArrays, to: dir + "/ours.safetensors",
            metadata: ["format": "np", "note": "ä\"b"])
        let output = try runPython(
            pythonFormulaTensors + """
                from safetensors.numpy import load_file, save_file
                from safetensors import safe_open
                d = sys.argv[1]
                check(load_file(d + '/ours.safetensors'))
                with safe_open(d + '/ours.safetensors', framework='numpy') as f:
                    assert f.metadata() == {'format': 'np', 'note': 'ä"b'}, \\
                        f.metadata()
                save_file(tensors, d + '/theirs.safetensors',
                          metadata={'from': 'python', 'x': 'y'})
                print('ok')
                """, [dir, formulaSpec])
        XCTAssertEqual(output, "ok\n")
        let theirs = dir + "/theirs.safetensors"
        XCTAssertEqual(
            summary(try SafeTensors.read(contentsOf: theirs)),
            summary(formulaArrays))
        XCTAssertEqual(
            try SafeTensors.readMetadata(contentsOf: theirs),
            ["from": "python", "x": "y"])
    }

    /// Against a reader and writer written here with Python's struct and
    /// json modules, independent of this package's code.
    func testStdlibPythonReaderAndWriterAgree() throws {
        let dir = try makeTemporaryDirectory(for: self)
        try SafeTensors.write(
            formulaArrays, to: dir + "/ours.safetensors",
            metadata: ["format": "np"])
        let output = try runPython(
            pythonFormulaTensors + """
                import struct
                codes = {'F32': '<f4', 'F64': '<f8', 'I32': '<i4', 'I64': '<i8'}
                names = {v: k for k, v in codes.items()}
                def read(path):
                    raw = open(path, 'rb').read()
                    (n,) = struct.unpack('<Q', raw[:8])
                    assert n % 8 == 0, n
                    header = json.loads(raw[8:8 + n].decode('utf-8'))
                    meta = header.pop('__metadata__', {})
                    out = {}
                    for name, info in header.items():
                        b, e = info['data_offsets']
                        a = np.frombuffer(raw[8 + n + b:8 + n + e],
                                          dtype=codes[info['dtype']])
                        out[name] = a.reshape(info['shape'])
                    return out, meta
                def write(path, tensors, meta):
                    # Data in reverse name order, so the header's key order
                    # and the file order differ.
                    header, blobs, offset = {'__metadata__': meta}, [], 0
                    for name in sorted(tensors, reverse=True):
                        blob = tensors[name].tobytes()
                        header[name] = {
                            'dtype': names[tensors[name].dtype.str],
                            'shape': list(tensors[name].shape),
                            'data_offsets': [offset, offset + len(blob)]}
                        blobs.append(blob)
                        offset += len(blob)
                    text = json.dumps(dict(sorted(header.items()))).encode()
                    text += b' ' * (-len(text) % 8)
                    with open(path, 'wb') as f:
                        f.write(struct.pack('<Q', len(text)) + text)
                        f.write(b''.join(blobs))
                d = sys.argv[1]
                got, meta = read(d + '/ours.safetensors')
                check(got)
                assert meta == {'format': 'np'}, meta
                write(d + '/theirs.safetensors', tensors, {'by': 'stdlib'})
                print('ok')
                """, [dir, formulaSpec])
        XCTAssertEqual(output, "ok\n")
        let theirs = try SafeTensors.read(
            contentsOf: dir + "/theirs.safetensors")
        XCTAssertEqual(summary(theirs), summary(formulaArrays))
        // Written in reverse name order, so file order is reverse order.
        XCTAssertEqual(
            theirs.map(\.name), formulaTensors.map(\.name).sorted().reversed())
        XCTAssertEqual(
            try SafeTensors.readMetadata(
                contentsOf: dir + "/theirs.safetensors"),
            ["by": "stdlib"])
    }
}

/// The streaming float32 writer makes the same bytes as the array writer.
final class SafeTensorsStreamingTests: XCTestCase {
    func testWriteFloat32MatchesWrite() throws {
        let dir = NSTemporaryDirectory() + "st-stream-\(UUID())"
        try FileManager.default.createDirectory(
            atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let values = (0..<23).map { Float($0) * 0.37 - 3 }
        let shapes = [("a/kernel", [3, 4]), ("b", [11]), ("empty", [0, 5])]
        var arrays: [(name: String, array: HostArray)] = []
        var start = 0
        for (name, shape) in shapes {
            let n = shape.reduce(1, *)
            arrays.append(
                (
                    name,
                    HostArray(
                        shape: shape, floats: Array(values[start..<(start + n)])
                    )
                ))
            start += n
        }
        let metadata = ["format": "test", "sequence_length": "7"]
        try SafeTensors.write(arrays, to: dir + "/a", metadata: metadata)
        try values.withUnsafeBufferPointer { all in
            var views:
                [(
                    name: String, shape: [Int],
                    values: UnsafeBufferPointer<Float>
                )] = []
            var at = 0
            for (name, shape) in shapes {
                let n = shape.reduce(1, *)
                views.append(
                    (
                        name, shape,
                        UnsafeBufferPointer(rebasing: all[at..<(at + n)])
                    ))
                at += n
            }
            try SafeTensors.writeFloat32(
                views, to: dir + "/b", metadata: metadata)
        }
        let a = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/a"))
        let b = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/b"))
        XCTAssertEqual(a, b)
        // A view whose length does not match its shape is refused.
        XCTAssertThrowsError(
            try values.withUnsafeBufferPointer { all in
                try SafeTensors.writeFloat32(
                    [("x", [2, 2], UnsafeBufferPointer(rebasing: all[0..<3]))],
                    to: dir + "/c")
            })
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/c"))
    }
}
