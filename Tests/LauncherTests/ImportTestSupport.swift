import Foundation
import Network
import XCTest

@testable import Launcher

/// A fresh temporary folder, removed when the test ends.
func makeTemporaryFolder(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "import-test-\(UUID().uuidString)"
    try FileManager.default.createDirectory(
        atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

func writeText(_ text: String, to path: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// Runs prepare with `arguments` (without `--csv` and `--out`).
@discardableResult
func runPrepareForTest(csv: String, out: String, _ arguments: [String]) throws
    -> PrepareRecord
{
    guard
        let options = try PrepareOptions.parse(
            ["--csv", csv, "--out", out] + arguments)
    else {
        throw UsageError("help was printed")
    }
    return try prepare(options)
}

/// The error `body` throws, as its message; "no error" when none.
func thrownMessage(_ body: () throws -> Void) -> String {
    do {
        try body()
        return "no error"
    } catch {
        return "\(error)"
    }
}

func readInt32s(_ path: String) throws -> (shape: [Int], values: [Int32]) {
    let array = try NPY.read(contentsOf: path)
    guard case .int32(let values) = array.storage else {
        throw UsageError("\(path) is not int32")
    }
    return (array.shape, values)
}

func readFloats(_ path: String) throws -> (shape: [Int], values: [Float]) {
    let array = try NPY.read(contentsOf: path)
    guard case .float32(let values) = array.storage else {
        throw UsageError("\(path) is not float32")
    }
    return (array.shape, values)
}
