import Foundation
import XCTest

@testable import Launcher

/// Every input the fuzzers (scripts/fuzz.sh) found crashing an import
/// reader is kept in Fuzz/crashers/<target>/; each must now end in an
/// ImportError, never a trap or another error.
final class FuzzRegressionTests: XCTestCase {
    func testCSVCrashers() throws {
        for (name, bytes) in try fuzzCrashers("csv") {
            XCTAssertThrowsError(try CSVTable(bytes: bytes, file: name), name) { error in
                XCTAssertTrue(error is ImportError, "\(name): \(type(of: error)) \(error)")
            }
        }
    }

    func testVocabularyCrashers() throws {
        for (name, bytes) in try fuzzCrashers("vocabulary") {
            XCTAssertThrowsError(try Vocabulary.decode(bytes: bytes, file: name), name) { error in
                XCTAssertTrue(error is ImportError, "\(name): \(type(of: error)) \(error)")
            }
        }
    }

    func testPrepareJSONCrashers() throws {
        for (name, bytes) in try fuzzCrashers("prepare-json") {
            XCTAssertThrowsError(try PrepareRecord.decode(bytes: bytes, file: name), name) { error in
                XCTAssertTrue(error is ImportError, "\(name): \(type(of: error)) \(error)")
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
