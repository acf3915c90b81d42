import Foundation
import XCTest

@testable import Network

/// Every input the fuzzers (scripts/fuzz.sh) found crashing a tensor
/// reader is kept in Fuzz/crashers/<target>/; each must now end in a
/// FileFormatError, never a trap or another error.
final class FuzzRegressionTests: XCTestCase {
    func testNPYCrashers() throws {
        for (name, bytes) in try fuzzCrashers("npy") {
            XCTAssertThrowsError(try NPY.decode(bytes, file: name), name) {
                error in
                XCTAssertTrue(
                    error is FileFormatError,
                    "\(name): \(type(of: error)) \(error)")
            }
        }
    }

    func testSafeTensorsCrashers() throws {
        for (name, bytes) in try fuzzCrashers("safetensors") {
            XCTAssertThrowsError(
                try SafeTensors.decode(bytes, file: name), name
            ) { error in
                XCTAssertTrue(
                    error is FileFormatError,
                    "\(name): \(type(of: error)) \(error)")
            }
        }
    }
}

/// The files of Fuzz/crashers/<target>/ (names starting with a dot left
/// out), with their bytes. The folder itself must exist, so that a moved
/// folder fails the test instead of passing it with no inputs.
func fuzzCrashers(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
    let root = URL(fileURLWithPath: "\(#filePath)")
        .deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let folder = root.appendingPathComponent("Fuzz/crashers/\(target)")
    let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        .filter { !$0.hasPrefix(".") }.sorted()
    return try names.map { name in
        let data = try Data(contentsOf: folder.appendingPathComponent(name))
        return ("\(target)/\(name)", [UInt8](data))
    }
}
