import Foundation
import XCTest

@testable import Launcher

final class PreparedImportTests: XCTestCase {
    private let csvText = """
        text,n,when,link,x
        "The cat, the HAT.",5,2017-07-14T14:30:59+0000,https://www.facebook.com/bbc/videos/1/,1.5
        A cat's hat; the end,1,2017-07-15T02:00:00Z,http://bit.ly/abc,2.5
        end of it,9,2017-07-16T23:59:59,,-1
        new words here,3,2017-07-17T08:00:00Z,HTTPS://FACEBOOK.COM/x/VIDEOS/2,0

        """
    private let arguments = [
        "--text-column", "text", "--label-column", "n", "--label-threshold",
        "median",
        "--time-column", "when", "--timezone-offset", "-4",
        "--link-video-column", "link",
        "--aux-columns", "x", "--vocab-size", "6", "--sequence-length", "5",
        "--validation-split", "0.25",
    ]

    func testTransformReproducesThePreparedArrays() throws {
        let dir = try makeTemporaryFolder(self)
        try writeText(csvText, to: dir + "/in.csv")
        try runPrepareForTest(csv: dir + "/in.csv", out: dir + "/o", arguments)
        let prepared = try PreparedImport(directory: dir + "/o")
        XCTAssertEqual(prepared.featureCount, 6)
        XCTAssertEqual(prepared.sequenceLength, 5)
        let result = try prepared.transform(csv: dir + "/in.csv")
        XCTAssertEqual(result.rows, 4)
        XCTAssertEqual(
            result.ids, try readInt32s(dir + "/o/main_input.npy").values)
        XCTAssertEqual(
            result.aux, try readFloats(dir + "/o/aux_input.npy").values)
        XCTAssertEqual(
            result.labels, try readFloats(dir + "/o/labels.npy").values)
        XCTAssertEqual(result.texts[0], "The cat, the HAT.")
        // The second link is a video URL in capitals.
        XCTAssertGreaterThan(result.aux[3 * 6 + 4], 0)
    }

    func testTransformWithoutLabelColumnAndWithNewWords() throws {
        let dir = try makeTemporaryFolder(self)
        try writeText(csvText, to: dir + "/in.csv")
        try runPrepareForTest(csv: dir + "/in.csv", out: dir + "/o", arguments)
        try writeText(
            "link,when,x,text\n,2017-07-14T14:30:59Z,1.5,\"zebra, the cat\"\n,2017-07-14T14:30:59Z,0,\n",
            to: dir + "/new.csv")
        let prepared = try PreparedImport(prepareJSON: dir + "/o/prepare.json")
        let result = try prepared.transform(csv: dir + "/new.csv")
        XCTAssertNil(result.labels)
        XCTAssertEqual(result.rows, 2)
        // Training rows (first three): the 3, end 2, hat 2, cat 1 ... V=6 keeps 4 words.
        XCTAssertEqual(
            try String(
                contentsOfFile: dir + "/o/vocabulary.txt", encoding: .utf8),
            "the\nhat\nend\ncat\n")
        XCTAssertEqual(Array(result.ids[0..<5]), [0, 0, 1, 2, 5])
        XCTAssertEqual(Array(result.ids[5..<10]), [0, 0, 0, 0, 0])  // an empty text is all padding
        XCTAssertEqual(result.texts, ["zebra, the cat", ""])

        try writeText(
            "text,when,link\nhi,2017-07-14T14:30:59Z,\n",
            to: dir + "/missing.csv")
        let message = thrownMessage {
            _ = try prepared.transform(csv: dir + "/missing.csv")
        }
        XCTAssertTrue(
            message.contains("'x'") && message.hasPrefix(dir + "/missing.csv"),
            message)
    }

    func testLoadingChecksTheVocabularyFile() throws {
        let dir = try makeTemporaryFolder(self)
        try writeText(csvText, to: dir + "/in.csv")
        try runPrepareForTest(csv: dir + "/in.csv", out: dir + "/o", arguments)
        try writeText("the\nhat\n", to: dir + "/o/vocabulary.txt")
        let message = thrownMessage {
            _ = try PreparedImport(directory: dir + "/o")
        }
        XCTAssertTrue(message.contains("holds 2 words"), message)
    }

    func testPredictionsCSVQuotesAndReadsBack() throws {
        let dir = try makeTemporaryFolder(self)
        let texts = [
            "plain", "with, comma", "say \"hi\"", "two\nlines", " padded ", "",
        ]
        let main: [Float] = [0.5, 0.25, 1, 0, 0.125, 0.75]
        let aux: [Float] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
        try writePredictionsCSV(
            texts: texts, main: main, aux: aux, to: dir + "/p.csv")
        let bytes = try XCTUnwrap(
            FileManager.default.contents(atPath: dir + "/p.csv"))
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(
            text.hasPrefix(
                "text,main_output,aux_output\r\nplain,0.5,0.1\r\n\"with, comma\",0.25,0.2\r\n"
            ), text)
        XCTAssertTrue(text.contains("\"say \"\"hi\"\"\",1.0,0.3\r\n"), text)
        let table = try CSVTable(bytes: [UInt8](bytes), file: "p.csv")
        XCTAssertEqual(table.header, ["text", "main_output", "aux_output"])
        XCTAssertEqual((0..<table.rowCount).map { table.field($0, 0) }, texts)
        XCTAssertEqual(
            (0..<table.rowCount).map { Float(table.field($0, 1))! }, main)
        XCTAssertThrowsError(
            try writePredictionsCSV(
                texts: ["a"], main: [], aux: [1], to: dir + "/q.csv"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/q.csv"))
    }
}
