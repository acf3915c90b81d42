import Foundation
import XCTest

@testable import Launcher

final class BundledDatasetTests: XCTestCase {
    func testFindsTheRepositoryCopy() throws {
        unsetenv("HEADLINE_DATA_DIR")
        let path = try bundledDatasetCSV()
        XCTAssertTrue(
            path.hasSuffix("/data/fb-news-posts-2017/fb_news_posts_20K.csv"),
            path)
        XCTAssertEqual(
            try FileManager.default.attributesOfItem(atPath: path)[.size]
                as? Int, 7_771_771)
    }

    func testEnvironmentVariable() throws {
        let dir = try makeTemporaryFolder(self)
        defer { unsetenv("HEADLINE_DATA_DIR") }
        setenv("HEADLINE_DATA_DIR", dir, 1)
        let message = thrownMessage { _ = try bundledDatasetCSV() }
        XCTAssertTrue(
            message.contains("HEADLINE_DATA_DIR") && message.contains(dir),
            message)
        try FileManager.default.createDirectory(
            atPath: dir + "/fb-news-posts-2017",
            withIntermediateDirectories: true)
        try writeText(
            "x\n", to: dir + "/fb-news-posts-2017/fb_news_posts_20K.csv")
        XCTAssertEqual(
            try bundledDatasetCSV(),
            dir + "/fb-news-posts-2017/fb_news_posts_20K.csv")
    }

    /// The default run's import of the real file (about a second in a
    /// debug build).
    func testDefaultRunOnTheRealData() throws {
        let dir = try makeTemporaryFolder(self)
        let csv = try bundledDatasetCSV()
        XCTAssertEqual(
            try runPrepare(
                defaultPrepareArguments(csv: csv, out: dir + "/default")), 0)
        let record = try PrepareRecord.read(path: dir + "/default/prepare.json")
        XCTAssertEqual(record.rows.inFile, 19_850)
        XCTAssertEqual(record.rows.duplicatesDropped, 250)
        XCTAssertGreaterThanOrEqual(record.rows.emptyTextDropped, 729)
        XCTAssertEqual(
            record.rows.written, 19_600 - record.rows.emptyTextDropped)
        XCTAssertEqual(record.featureNames.count, 5)
        XCTAssertEqual(record.vocabularyWords, 9_998)
        let positive =
            Double(record.labels.trainingPositive)
            / Double(record.rows.training)
        XCTAssertEqual(positive, 0.5, accuracy: 0.02)
        let aux = try readFloats(dir + "/default/aux_input.npy")
        XCTAssertEqual(aux.shape, [record.rows.written, 5])
        let prepared = try PreparedImport(directory: dir + "/default")
        let again = try prepared.transform(csv: csv)
        XCTAssertEqual(again.rows, 19_850)
    }
}
