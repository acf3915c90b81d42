import Foundation
import XCTest

@testable import Launcher

/// Each bad input fails with a message naming the file and the place, and
/// leaves no output folder behind.
final class ImportErrorTests: XCTestCase {
    private let basic = [
        "--text-column", "text", "--label-column", "n", "--label-threshold",
        "median",
    ]

    /// Runs prepare on `csv` text and returns the error message, after
    /// checking that nothing but the CSV is left in the folder.
    private func failure(
        _ csv: String, _ extra: [String] = [], file: StaticString = #filePath,
        line: UInt = #line
    )
        throws -> (message: String, path: String)
    {
        let dir = try makeTemporaryFolder(self)
        let path = dir + "/input.csv"
        try writeText(csv, to: path)
        let message = thrownMessage {
            try runPrepareForTest(csv: path, out: dir + "/out", basic + extra)
        }
        XCTAssertNotEqual(message, "no error", file: file, line: line)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir),
            ["input.csv"],
            "an output folder was left behind", file: file, line: line)
        return (message, path)
    }

    func testMissingColumnNamesItAndListsTheHeader() throws {
        let (message, path) = try failure("text,count\nhello,1\n")
        XCTAssertTrue(message.hasPrefix(path), message)
        XCTAssertTrue(message.contains("no column 'n'"), message)
        XCTAssertTrue(message.contains("'text', 'count'"), message)
    }

    func testMissingFeatureColumn() throws {
        let (message, _) = try failure(
            "text,n\nhello,1\n", ["--aux-columns", "n,likes"])
        XCTAssertTrue(
            message.contains("'likes'") && message.contains("--aux-columns"),
            message)
    }

    func testEmptyTextNamesRowAndLine() throws {
        let (message, path) = try failure(
            "text,n\nhello,1\n\"multi\nline\",2\n\" ... \",3\n")
        XCTAssertTrue(
            message.hasPrefix(path + ": data row 3 (line 5), column 'text'"),
            message)
        XCTAssertTrue(message.contains("--skip-empty-text"), message)
    }

    func testLabelThatIsNotANumber() throws {
        for bad in ["many", "nan", "inf", "", "0x10", "1e999"] {
            let (message, path) = try failure("text,n\nhello,1\nworld,\(bad)\n")
            XCTAssertTrue(
                message.hasPrefix(path + ": data row 2 (line 3), column 'n'"),
                message)
            XCTAssertTrue(message.contains("'\(bad)'"), message)
        }
        // Negative numbers and exponents are numbers.
        let dir = try makeTemporaryFolder(self)
        try writeText("text,n\nhello,-3\nworld,2.5e1\n", to: dir + "/ok.csv")
        XCTAssertEqual(
            try runPrepareForTest(csv: dir + "/ok.csv", out: dir + "/o", basic)
                .labelThresholdValue, 11)
    }

    func testTimeThatDoesNotParse() throws {
        let iso = try failure(
            "text,n,t\nhello,1,2017-07-14T14:30:59+0000\nworld,2,14/07/2017\n",
            ["--time-column", "t"])
        XCTAssertTrue(
            iso.message.hasPrefix(
                iso.path + ": data row 2 (line 3), column 't'"), iso.message)
        XCTAssertTrue(
            iso.message.contains("ISO 8601")
                && iso.message.contains("'14/07/2017'"), iso.message)

        let custom = try failure(
            "text,n,t\nhello,1,14/07/2017 10:00\nworld,2,2017-07-14T14:30:59\n",
            ["--time-column", "t", "--time-format", "%d/%m/%Y %H:%M"])
        XCTAssertTrue(
            custom.message.contains("data row 2 (line 3)"), custom.message)
        XCTAssertTrue(
            custom.message.contains("'%d/%m/%Y %H:%M'"), custom.message)
    }

    func testFileWithNoDataRows() throws {
        let (message, path) = try failure("text,n\r\n")
        XCTAssertTrue(message.hasPrefix(path), message)
        XCTAssertTrue(message.contains("no data rows"), message)
    }

    func testMalformedCSVNamesTheLine() throws {
        let (message, path) = try failure("text,n\nhello,1\n\"open,2\nmore,3\n")
        XCTAssertTrue(message.hasPrefix(path + ": line 3:"), message)
    }

    func testVocabularyThatDoesNotMatchV() throws {
        let dir = try makeTemporaryFolder(self)
        try writeText("a\nb\nc\n", to: dir + "/vocabulary.txt")
        let (message, _) = try failure(
            "text,n\nhello,1\n", ["--vocabulary", dir + "/vocabulary.txt"])
        XCTAssertTrue(message.hasPrefix(dir + "/vocabulary.txt"), message)
        XCTAssertTrue(
            message.contains("size 5") && message.contains("10000"), message)
    }

    func testValidationSplitLeavingNoTrainingRows() throws {
        let (message, _) = try failure(
            "text,n\nhello,1\n", ["--validation-split", "0.5"])
        XCTAssertTrue(message.contains("no training rows"), message)
    }

    func testMissingCSVFile() throws {
        let dir = try makeTemporaryFolder(self)
        let message = thrownMessage {
            try runPrepareForTest(
                csv: dir + "/nope.csv", out: dir + "/o", self.basic)
        }
        XCTAssertTrue(
            message.hasPrefix(dir + "/nope.csv")
                && message.contains("no such file"), message)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir), [])
    }

    func testFailedWriteRemovesThePartialFolder() throws {
        let dir = try makeTemporaryFolder(self)
        try writeText("text,n\nhello,1\n", to: dir + "/in.csv")
        var data = try buildPreparedData(
            XCTUnwrap(
                PrepareOptions.parse(
                    ["--csv", dir + "/in.csv", "--out", dir + "/o"] + basic)))
        // Two arrays are written before the labels no longer fit their shape.
        data.labels = []
        XCTAssertThrowsError(
            try PreparedFolder.write(data, to: dir + "/o", overwrite: false))
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir), ["in.csv"]
        )
    }
}
