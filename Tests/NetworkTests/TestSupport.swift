import Foundation
import XCTest

@testable import Network

/// The URL of a copied Keras reference file, for example
/// `fixtureURL("tiny", "weights.safetensors")`.
///
/// The folders tiny/, small/ and saturated/ under Fixtures/ are copies of
/// the reference fixtures (see their fixture.json), kept in the repository
/// so the tests need nothing outside it.
func fixtureURL(_ folder: String, _ file: String) -> URL {
    guard
        let root = Bundle.module.url(
            forResource: "Fixtures", withExtension: nil)
    else {
        fatalError("the Fixtures folder is missing from the test bundle")
    }
    return root.appendingPathComponent(folder)
        .appendingPathComponent(file)
}

/// A fresh directory under the system temporary directory, removed when
/// the test ends.
func makeTemporaryDirectory(for test: XCTestCase) throws -> String {
    let path =
        NSTemporaryDirectory()
        + "network-tests-\(getpid())-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
        atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock {
        try? FileManager.default.removeItem(atPath: path)
    }
    return path
}

/// Why a Python helper could not give an answer.
struct PythonError: Error, CustomStringConvertible {
    let description: String
}

/// Runs `python3 -c script args...` and returns its standard output.
///
/// The tests that compare with numpy must not pass quietly without it, so
/// a missing python3 or numpy is an error that says what to install.
@discardableResult
func runPython(_ script: String, _ arguments: [String] = []) throws
    -> String
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    // Standard error goes to a file, so a script that writes a lot there
    // cannot block while this side waits on standard output.
    let errorPath =
        NSTemporaryDirectory()
        + "network-tests-stderr-\(UUID().uuidString)"
    _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errorPath) }
    guard let errorFile = FileHandle(forWritingAtPath: errorPath) else {
        throw PythonError(description: "cannot create \(errorPath)")
    }
    defer { try? errorFile.close() }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = errorFile
    do {
        try process.run()
    } catch {
        throw PythonError(
            description: "cannot start python3 (\(error)); these tests "
                + "need python3 with numpy installed")
    }
    let outData = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let stderr =
        (try? String(contentsOfFile: errorPath, encoding: .utf8))
        ?? ""
    if process.terminationStatus != 0 {
        if stderr.contains("No module named 'numpy'") {
            throw PythonError(
                description: "numpy is not installed for python3; these "
                    + "tests compare with numpy (pip install numpy)")
        }
        if process.terminationStatus == 127 {
            throw PythonError(
                description: "python3 was not found on PATH; these tests "
                    + "need python3 with numpy installed")
        }
        throw PythonError(
            description: "python3 exited with status "
                + "\(process.terminationStatus):\n\(stderr)")
    }
    return String(decoding: outData, as: UTF8.self)
}

/// Asserts that `body` throws a `FileFormatError` about `file` whose
/// message contains every one of `fragments`.
func assertFormatError<T>(
    _ body: @autoclosure () throws -> T, file expectedFile: String,
    _ fragments: [String], _ label: String = "",
    file: StaticString = #filePath, line: UInt = #line
) {
    do {
        _ = try body()
        XCTFail(
            "\(label): expected a FileFormatError, got a result",
            file: file, line: line)
    } catch let error as FileFormatError {
        XCTAssertEqual(error.file, expectedFile, label, file: file, line: line)
        XCTAssertTrue(
            error.description.contains(expectedFile),
            "\(label): description does not name the file: \(error)",
            file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(
                error.message.contains(fragment),
                "\(label): message lacks '\(fragment)': \(error.message)",
                file: file, line: line)
        }
    } catch {
        XCTFail(
            "\(label): expected a FileFormatError, got \(error)",
            file: file, line: line)
    }
}

/// The bit patterns of the elements, so that values (including NaN and
/// -0.0) compare exactly.
func bitPatterns(_ array: HostArray) -> [UInt64] {
    switch array.storage {
    case .float32(let v): return v.map { UInt64($0.bitPattern) }
    case .float64(let v): return v.map { $0.bitPattern }
    case .int32(let v): return v.map { UInt64(UInt32(bitPattern: $0)) }
    case .int64(let v): return v.map { UInt64(bitPattern: $0) }
    }
}

/// A deterministic array of `type` with awkward values: signs, extremes,
/// -0.0, subnormals, infinities and NaN.
func sampleArray(_ type: ElementType, shape: [Int]) -> HostArray {
    let count = shape.reduce(1, *)
    switch type {
    case .float32:
        let special: [Float] = [
            0, -0.0, 1.5, -2.25, .greatestFiniteMagnitude,
            .leastNonzeroMagnitude, .infinity, -.infinity, .nan, 1e-3,
        ]
        return HostArray(
            shape: shape,
            storage: .float32(
                (0..<count).map {
                    $0 < special.count ? special[$0] : Float($0) * 0.37 - 5
                }))
    case .float64:
        let special: [Double] = [
            0, -0.0, 1.5, -2.25, .greatestFiniteMagnitude,
            .leastNonzeroMagnitude, .infinity, -.infinity, .nan, 1e-300,
        ]
        return HostArray(
            shape: shape,
            storage: .float64(
                (0..<count).map {
                    $0 < special.count ? special[$0] : Double($0) * 0.37 - 5
                }))
    case .int32:
        let special: [Int32] = [0, -1, 1, .min, .max, 0x1234_5678]
        return HostArray(
            shape: shape,
            storage: .int32(
                (0..<count).map {
                    $0 < special.count ? special[$0] : Int32($0) * 7 - 100
                }))
    case .int64:
        let special: [Int64] = [0, -1, 1, .min, .max, 0x1234_5678_9ABC_DEF0]
        return HostArray(
            shape: shape,
            storage: .int64(
                (0..<count).map {
                    $0 < special.count ? special[$0] : Int64($0) * 7 - 100
                }))
    }
}

/// A batch of random rows for a model of sizes `config`, and the same
/// values in Double for `ReferenceModel`: per row, T ids, A aux values in
/// [−1, 1) and a label from `label`, drawn from `rng` in that order.
struct RandomBatch {
    var batch: Batch
    var ids: [Int32] = []
    var aux: [Double] = []
    var labels: [Double] = []

    /// `leadingZeros[b]`, when given, makes row b front-padded: that many
    /// 0 ids, then ids from 1..<V.
    init(
        _ config: ModelConfig, rows: Int, rng: inout SeededGenerator,
        leadingZeros: [Int]? = nil,
        label: (inout SeededGenerator) -> Float
    ) {
        let t = config.sequenceLength, a = config.auxFeatures
        batch = Batch(capacity: rows, sequenceLength: t, auxFeatures: a)
        for b in 0..<rows {
            let rowIds = (0..<t).map { s -> Int32 in
                guard let lead = leadingZeros?[b] else {
                    return Int32(rng.next() % UInt64(config.vocabularySize))
                }
                return s < lead
                    ? 0
                    : Int32(1 + rng.next() % UInt64(config.vocabularySize - 1))
            }
            let rowAux = (0..<a).map { _ in Float(rng.nextUnit() * 2 - 1) }
            let y = label(&rng)
            rowIds.withUnsafeBufferPointer { i in
                rowAux.withUnsafeBufferPointer { x in
                    batch.append(ids: i, aux: x, label: y)
                }
            }
            ids += rowIds
            aux += rowAux.map(Double.init)
            labels.append(Double(y))
        }
    }
}
