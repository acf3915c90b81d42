import Foundation
import XCTest

@testable import Network

/// The bytes of an .npy file with the given header text and data, for
/// hand-made (and deliberately broken) files.
func npyFile(
    _ header: String, data: [UInt8] = [], version: UInt8 = 1
) -> [UInt8] {
    var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
    let text = Array(header.utf8)
    let lengthBytes = version == 1 ? 2 : 4
    for i in 0..<lengthBytes {
        out.append(UInt8(truncatingIfNeeded: text.count >> (8 * i)))
    }
    return out + text + data
}

/// Little-endian bytes of float32 values.
func littleEndianBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { value -> [UInt8] in
        let bits = value.bitPattern
        return (0..<4).map { UInt8(truncatingIfNeeded: bits >> (8 * $0)) }
    }
}

/// Values 0.5 * i - 1 (floats) or 3 * i - 7 (integers) for i = 0..<n,
/// the formula that the numpy scripts below use too.
func formulaArray(_ type: ElementType, shape: [Int]) -> HostArray {
    let n = shape.reduce(1, *)
    switch type {
    case .float32:
        return HostArray(
            shape: shape,
            storage: .float32((0..<n).map { Float(Double($0) * 0.5 - 1) }))
    case .float64:
        return HostArray(
            shape: shape,
            storage: .float64((0..<n).map { Double($0) * 0.5 - 1 }))
    case .int32:
        return HostArray(
            shape: shape, storage: .int32((0..<n).map { Int32($0 * 3 - 7) }))
    case .int64:
        return HostArray(
            shape: shape, storage: .int64((0..<n).map { Int64($0 * 3 - 7) }))
    }
}

/// The Python side of `formulaArray`, followed by helpers for the scripts.
let pythonFormula = """
    import sys, json
    import numpy as np
    def formula(descr, shape):
        n = int(np.prod(shape, dtype=np.int64))
        base = np.arange(n, dtype=np.float64)
        kind = np.dtype(descr).kind
        values = base * 0.5 - 1 if kind == 'f' else base * 3 - 7
        return values.astype(descr).reshape(shape)
    def header_of(path):
        raw = open(path, 'rb').read()
        major = raw[6]
        if major == 1:
            n = int.from_bytes(raw[8:10], 'little'); start = 10
        else:
            n = int.from_bytes(raw[8:12], 'little'); start = 12
        return major, raw[start:start + n].decode('latin1'), start + n

    """

let descrOfType: [ElementType: String] = [
    .float32: "<f4", .float64: "<f8", .int32: "<i4", .int64: "<i8",
]

final class NPYTests: XCTestCase {
    let shapes: [[Int]] = [
        [], [0], [1], [7], [2, 3], [2, 0, 3], [3, 4, 5], [1, 1, 1, 1],
    ]

    func testRoundTripEveryTypeAndShape() throws {
        let dir = try makeTemporaryDirectory(for: self)
        for type in ElementType.allCases {
            for shape in shapes {
                let array = sampleArray(type, shape: shape)
                let label = "\(type) \(shape)"
                let decoded = try NPY.decode(NPY.encode(array), file: label)
                XCTAssertEqual(decoded.shape, shape, label)
                XCTAssertEqual(decoded.elementType, type, label)
                XCTAssertEqual(bitPatterns(decoded), bitPatterns(array), label)

                let path = dir + "/\(type)-\(shape.count)-\(array.count).npy"
                try NPY.write(array, to: path)
                let read = try NPY.read(contentsOf: path)
                XCTAssertEqual(read.shape, shape, label)
                XCTAssertEqual(bitPatterns(read), bitPatterns(array), label)
            }
        }
    }

    func testScalarAndEmptyCounts() throws {
        let scalar = try NPY.decode(
            NPY.encode(HostArray(shape: [], floats: [2.5])), file: "s")
        XCTAssertEqual(scalar.shape, [])
        XCTAssertEqual(scalar.count, 1)
        XCTAssertEqual(scalar.floats(), [2.5])
        let empty = try NPY.decode(
            NPY.encode(HostArray(shape: [4, 0], int32s: [])), file: "e")
        XCTAssertEqual(empty.shape, [4, 0])
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(empty.integers(), [])
    }

    func testHeaderIsPaddedTo64AndVersion1() {
        for shape in shapes + [
            [123_456_789, 0], Array(repeating: 1, count: 30),
        ] {
            let bytes = NPY.encode(formulaArray(.float32, shape: shape))
            XCTAssertEqual(bytes[6], 1, "version for \(shape)")
            let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            XCTAssertEqual((10 + headerLength) % 64, 0, "\(shape)")
            XCTAssertEqual(bytes[10 + headerLength - 1], 0x0A, "\(shape)")
        }
    }

    /// A shape with so many dimensions that the header passes 65535 bytes
    /// must switch to version 2.0, as numpy does, rather than wrap the
    /// 16-bit length.
    func testHugeHeaderUsesVersion2() throws {
        let shape = Array(repeating: 1, count: 25_000)
        let array = formulaArray(.int32, shape: shape)
        let bytes = NPY.encode(array)
        XCTAssertEqual(bytes[6], 2)
        let decoded = try NPY.decode(bytes, file: "big-header")
        XCTAssertEqual(decoded, array)
    }

    func testEncodeIsByteIdenticalToNumpySave() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let cases: [(ElementType, [Int])] = [
            (.float32, []), (.float32, [0]), (.float32, [7]),
            (.float32, [2, 3]), (.float64, [4, 3, 2]), (.int32, [3, 7]),
            (.int64, [5]), (.int64, []), (.int32, [2, 0, 3]),
            (.float64, [1000, 1]), (.float32, Array(repeating: 1, count: 20)),
            (.int32, [1, 2, 3, 4, 5, 6]),
        ]
        let spec = cases.enumerated().map { i, c in
            ["name": "case\(i)", "descr": descrOfType[c.0]!, "shape": c.1]
                as [String: Any]
        }
        let json = String(
            decoding: try JSONSerialization.data(withJSONObject: spec),
            as: UTF8.self)
        try runPython(
            pythonFormula + """
                d = sys.argv[1]
                for case in json.loads(sys.argv[2]):
                    a = formula(case['descr'], tuple(case['shape']))
                    np.save(d + '/' + case['name'] + '.npy', a)
                """, [dir, json])
        for (i, (type, shape)) in cases.enumerated() {
            let numpyBytes = try Array(
                Data(contentsOf: URL(fileURLWithPath: dir + "/case\(i).npy")))
            let ours = NPY.encode(formulaArray(type, shape: shape))
            XCTAssertEqual(ours.count, numpyBytes.count, "\(type) \(shape)")
            XCTAssertEqual(ours, numpyBytes, "\(type) \(shape)")
        }
    }

    func testNumpyLoadsWhatWeWrite() throws {
        let dir = try makeTemporaryDirectory(for: self)
        var spec: [[String: Any]] = []
        for type in ElementType.allCases {
            for (j, shape) in shapes.enumerated() {
                let array = sampleArray(type, shape: shape)
                let name = "\(type)-\(j).npy"
                try NPY.write(array, to: dir + "/" + name)
                spec.append([
                    "file": name, "descr": descrOfType[type]!,
                    "shape": shape,
                    "bits": bitPatterns(array).map { String($0) },
                ])
            }
        }
        let specPath = dir + "/spec.json"
        try JSONSerialization.data(withJSONObject: spec)
            .write(to: URL(fileURLWithPath: specPath))
        let output = try runPython(
            pythonFormula + """
                d = sys.argv[1]
                spec = json.load(open(sys.argv[2]))
                for case in spec:
                    path = d + '/' + case['file']
                    a = np.load(path)
                    assert a.dtype.str == case['descr'], (path, a.dtype.str)
                    assert a.shape == tuple(case['shape']), (path, a.shape)
                    assert a.flags.c_contiguous, path
                    unsigned = '<u%d' % a.dtype.itemsize
                    bits = a.reshape(-1).view(unsigned).tolist()
                    assert bits == [int(b) for b in case['bits']], path
                    major, header, start = header_of(path)
                    assert major == 1 and start % 64 == 0, (path, major, start)
                print('checked', len(spec))
                """, [dir, specPath])
        XCTAssertEqual(
            output.trimmingCharacters(in: .whitespacesAndNewlines),
            "checked \(spec.count)")
    }

    /// numpy-written files in Fortran order, big-endian, and with version
    /// 2.0 and 3.0 headers. The script asserts that each file really has
    /// the property, so these tests cannot pass on plain files.
    func testReadsNumpyFortranBigEndianAndNewerVersions() throws {
        let dir = try makeTemporaryDirectory(for: self)
        let cases:
            [(
                name: String, type: ElementType, descr: String,
                shape: [Int], fortran: Bool, version: Int
            )] = [
                ("f4_fortran", .float32, "<f4", [2, 3], true, 1),
                ("f8_fortran", .float64, "<f8", [2, 3, 4], true, 1),
                ("i4_fortran", .int32, "<i4", [3, 1, 2], true, 1),
                ("i8_fortran", .int64, "<i8", [4, 5], true, 1),
                ("f4_big", .float32, ">f4", [2, 3], false, 1),
                ("f8_big", .float64, ">f8", [5], false, 1),
                ("i4_big", .int32, ">i4", [2, 2], false, 1),
                ("i8_big", .int64, ">i8", [3], false, 1),
                ("f4_big_scalar", .float32, ">f4", [], false, 1),
                ("f8_big_fortran", .float64, ">f8", [3, 4], true, 1),
                ("f4_v2", .float32, "<f4", [2, 3], false, 2),
                ("i8_v3", .int64, "<i8", [4], false, 3),
                ("i4_v2_big_fortran", .int32, ">i4", [2, 3, 2], true, 2),
            ]
        let spec = cases.map {
            [
                "name": $0.name, "descr": $0.descr, "shape": $0.shape,
                "fortran": $0.fortran, "version": $0.version,
            ] as [String: Any]
        }
        let json = String(
            decoding: try JSONSerialization.data(withJSONObject: spec),
            as: UTF8.self)
        try runPython(
            pythonFormula + """
                d = sys.argv[1]
                for case in json.loads(sys.argv[2]):
                    a = formula(case['descr'], tuple(case['shape']))
                    if case['fortran']:
                        a = np.asfortranarray(a)
                    path = d + '/' + case['name'] + '.npy'
                    with open(path, 'wb') as f:
                        np.lib.format.write_array(
                            f, a, version=(case['version'], 0))
                    major, header, _ = header_of(path)
                    assert major == case['version'], (path, major)
                    flag = "'fortran_order': %s" % case['fortran']
                    assert flag in header, (path, header)
                    assert "'descr': '%s'" % case['descr'] in header, header
                """, [dir, json])
        for c in cases {
            let array = try NPY.read(contentsOf: dir + "/\(c.name).npy")
            let expected = formulaArray(c.type, shape: c.shape)
            XCTAssertEqual(array, expected, c.name)
        }
    }

    func testRefusesUnsupportedNumpyDtypes() throws {
        let dir = try makeTemporaryDirectory(for: self)
        try runPython(
            """
            import sys
            import numpy as np
            d = sys.argv[1]
            np.save(d + '/u1.npy', np.arange(4, dtype='|u1'))
            np.save(d + '/i1.npy', np.arange(4, dtype='|i1'))
            np.save(d + '/i2.npy', np.arange(4, dtype='<i2'))
            np.save(d + '/u2.npy', np.arange(4, dtype='<u2'))
            np.save(d + '/u8.npy', np.arange(4, dtype='<u8'))
            np.save(d + '/f2.npy', np.arange(4, dtype='<f2'))
            np.save(d + '/b1.npy', np.array([True, False]))
            np.save(d + '/c8.npy', np.arange(4, dtype='<c8'))
            np.save(d + '/U3.npy', np.array(['abc']))
            np.save(d + '/rec.npy', np.zeros(2, dtype=[('a', '<f4')]))
            """, [dir])
        let refused = [
            "u1": "'|u1' is not supported", "i1": "'|i1' is not supported",
            "i2": "'<i2' is not supported", "u2": "'<u2' is not supported",
            "u8": "'<u8' is not supported", "f2": "'<f2' is not supported",
            "b1": "'|b1' is not supported", "c8": "'<c8' is not supported",
            "U3": "'<U3' is not supported", "rec": "structured dtype",
        ]
        for (name, fragment) in refused {
            let path = dir + "/\(name).npy"
            assertFormatError(
                try NPY.read(contentsOf: path), file: path, [fragment], name)
        }
    }

    /// A 2 x 3 array in Fortran order stores its columns one after the
    /// other: (0, 3), (1, 4), (2, 5).
    func testFortranOrderIsTransposedToRowMajor() throws {
        let bytes = npyFile(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n",
            data: littleEndianBytes([0, 3, 1, 4, 2, 5]))
        let array = try NPY.decode(bytes, file: "fortran")
        XCTAssertEqual(array.shape, [2, 3])
        XCTAssertEqual(array.floats(), [0, 1, 2, 3, 4, 5])
    }

    func testBigEndianIsByteSwapped() throws {
        let bytes = npyFile(
            "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n",
            data: [0x00, 0x00, 0x01, 0x02, 0xFF, 0xFF, 0xFF, 0xFE])
        let array = try NPY.decode(bytes, file: "big")
        XCTAssertEqual(array.storage, .int32([0x0102, -2]))
    }

    /// Variants that numpy or other writers produce and that mean the
    /// same thing: other key order, double quotes, no trailing comma,
    /// Python 2 long integers, extra whitespace.
    func testHeaderParserAcceptsEquivalentSpellings() throws {
        let headers = [
            "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}",
            "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }",
            "  {\n 'descr' : '<f4' ,'fortran_order':False,'shape':( 2 , )}\n",
        ]
        for header in headers {
            let array = try NPY.decode(
                npyFile(header, data: littleEndianBytes([1, 2])),
                file: header)
            XCTAssertEqual(array, HostArray(shape: [2], floats: [1, 2]))
        }
    }

    func testConversions() {
        let ints = HostArray(shape: [3], int32s: [-1, 0, 7])
        XCTAssertEqual(ints.floats(), [-1, 0, 7])
        XCTAssertEqual(ints.doubles(), [-1, 0, 7])
        XCTAssertEqual(ints.integers(), [-1, 0, 7])
        let doubles = HostArray(shape: [2], storage: .float64([0.5, -3]))
        XCTAssertEqual(doubles.floats(), [0.5, -3])
        XCTAssertNil(doubles.integers())
        XCTAssertEqual(doubles.elementType, .float64)
        let longs = HostArray(shape: [1], storage: .int64([.max]))
        XCTAssertEqual(longs.integers(), [.max])
    }
}
