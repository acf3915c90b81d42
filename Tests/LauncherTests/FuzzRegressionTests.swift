import Foundation
import XCTest
import Network

@testable import Launcher

/// Every input the fuzzers (scripts/fuzz.sh) found crashing an import
/// reader is kept in Fuzz/crashers/<target>/; each must now end in an
/// ImportError, never a trap or another error.
final class FuzzRegressionTests: XCTestCase {
    func testCSVCrashers() throws {
        for (name, bytes) in try fuzzCrashers("csv") {
            XCTAssertThrowsError(try CSVTable(bytes: bytes, file: name), name) {
                error in
                XCTAssertTrue(
                    error is ImportError, "\(name): \(type(of: error)) \(error)"
                )
            }
        }
    }

    func testVocabularyCrashers() throws {
        for (name, bytes) in try fuzzCrashers("vocabulary") {
            XCTAssertThrowsError(
                try Vocabulary.decode(bytes: bytes, file: name), name
            ) { error in
                XCTAssertTrue(
                    error is ImportError, "\(name): \(type(of: error)) \(error)"
                )
            }
        }
    }

    /// Inputs the checkpoint fuzzer found (none so far) must be refused
    /// cleanly; its seeds, real checkpoints, must still decode.
    func testCheckpointCrashersAndSeeds() throws {
        for (name, bytes) in try fuzzCrashers("checkpoint") {
            XCTAssertThrowsError(try Checkpoint.decode(bytes, file: name)) {
                error in
                XCTAssertTrue(
                    error is DataError || error is FileFormatError,
                    "\(name): \(type(of: error)) \(error)")
            }
        }
        let root = URL(fileURLWithPath: "\(#filePath)")
            .deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let seeds = root.appendingPathComponent("Fuzz/corpus/checkpoint")
        let names = try FileManager.default.contentsOfDirectory(
            atPath: seeds.path
        ).filter { $0.hasSuffix(".safetensors") }
        XCTAssertFalse(names.isEmpty)
        for name in names {
            let bytes = [UInt8](
                try Data(contentsOf: seeds.appendingPathComponent(name)))
            let checkpoint = try Checkpoint.decode(bytes, file: name)
            XCTAssertFalse(checkpoint.parameters.isEmpty, name)
        }
    }

    func testPrepareJSONCrashers() throws {
        for (name, bytes) in try fuzzCrashers("prepare-json") {
            XCTAssertThrowsError(
                try PrepareRecord.decode(bytes: bytes, file: name), name
            ) { error in
                XCTAssertTrue(
                    error is ImportError, "\(name): \(type(of: error)) \(error)"
                )
            }
        }
    }

    /// Values that PrepareRecord.decode once let through and that then
    /// trapped in predict --csv: sequence_length -1 (Vocabulary.encode),
    /// vocab_size Int.min (vocab_size - 2 in PreparedImport), a timezone
    /// offset of 1e300 hours (Int64 conversion in FeatureSpec.rawFeatures).
    func testPrepareJSONOutOfRangeValues() throws {
        let seed = try fuzzCorpusFile("prepare-json/all-options.json")
        XCTAssertNoThrow(
            try PrepareRecord.decode(bytes: Array(seed.utf8), file: "seed"))
        let cases: [(key: String, value: String)] = [
            ("sequence_length", "-1"), ("sequence_length", "0"),
            ("sequence_length", "1000001"),
            ("vocab_size", "-9223372036854775808"), ("vocab_size", "1"),
            ("vocabulary_words", "-1"), ("vocabulary_words", "39"),
            ("timezone_offset_hours", "1e300"),
            ("timezone_offset_hours", "-24.5"),
        ]
        for (key, value) in cases {
            let pattern = try NSRegularExpression(
                pattern: "\"\(key)\" : [^,\n]+")
            let text = pattern.stringByReplacingMatches(
                in: seed, range: NSRange(seed.startIndex..., in: seed),
                withTemplate: "\"\(key)\" : \(value)")
            XCTAssertNotEqual(text, seed, key)
            XCTAssertThrowsError(
                try PrepareRecord.decode(
                    bytes: Array(text.utf8), file: "p.json"), "\(key) \(value)"
            ) { error in
                XCTAssertTrue(
                    "\(error)".contains("\(key) "), "\(key) \(value): \(error)")
            }
        }
    }
}

/// A seed file of Fuzz/corpus/, as text.
func fuzzCorpusFile(_ path: String) throws -> String {
    let root = URL(fileURLWithPath: "\(#filePath)")
        .deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return try String(
        contentsOf: root.appendingPathComponent("Fuzz/corpus/\(path)"),
        encoding: .utf8)
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
