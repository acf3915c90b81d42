import Foundation
import XCTest

@testable import Launcher

final class PrepareTests: XCTestCase {
    private let basic = [
        "--text-column", "text", "--label-column", "n", "--label-threshold",
        "median",
    ]

    func testWritesACompleteFolder() throws {
        let dir = try makeTemporaryFolder(self)
        let csv = dir + "/posts.csv"
        try writeText(
            """
            text,n,when,link,x
            "The cat, the HAT.",5,2017-07-14T14:30:59+0000,https://www.facebook.com/bbc/videos/1/,1.5
            A cat's hat; the end,1,2017-07-15T02:00:00Z,http://bit.ly/abc,2.5
            end,9,2017-07-16T23:59:59,,-1

            """, to: csv)
        let out = dir + "/prepared"
        let record = try runPrepareForTest(
            csv: csv, out: out,
            basic + [
                "--time-column", "when", "--link-video-column", "link",
                "--aux-columns", "x",
                "--vocab-size", "5", "--sequence-length", "4",
            ])
        let files = try FileManager.default.contentsOfDirectory(atPath: out)
            .sorted()
        XCTAssertEqual(
            files,
            [
                "aux_input.npy", "labels.npy", "main_input.npy", "prepare.json",
                "vocabulary.txt",
            ])
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
            ["posts.csv", "prepared"])

        // the 3, hat 2, cat 1, end 2 ... counts: the 3, hat 2, end 2, cat 1, a 1, cat's 1
        XCTAssertEqual(
            try String(
                contentsOfFile: out + "/vocabulary.txt", encoding: .utf8),
            "the\nhat\nend\n")
        let main = try readInt32s(out + "/main_input.npy")
        XCTAssertEqual(main.shape, [3, 4])
        XCTAssertEqual(main.values, [2, 1, 2, 3, 1, 3, 2, 4, 0, 0, 0, 4])
        let labels = try readFloats(out + "/labels.npy")
        XCTAssertEqual(labels.shape, [3, 1])
        XCTAssertEqual(labels.values, [0, 0, 1])  // median 5
        XCTAssertEqual(record.labelThresholdValue, 5)
        let aux = try readFloats(out + "/aux_input.npy")
        XCTAssertEqual(aux.shape, [3, 6])
        XCTAssertEqual(
            record.featureNames,
            ["hour_sin", "hour_cos", "dow_sin", "dow_cos", "link_video", "x"])
        // link_video is 1, 0, 0: mean 1/3, std sqrt(2)/3.
        let linkColumn = (0..<3).map { aux.values[$0 * 6 + 4] }
        let s = Float(2.0.squareRoot() / 3)
        XCTAssertEqual(linkColumn[0], (1 - 1 / 3) / s, accuracy: 1e-6)
        XCTAssertEqual(linkColumn[1], (0 - 1 / 3) / s, accuracy: 1e-6)

        let json =
            try JSONSerialization.jsonObject(
                with: Data(
                    contentsOf: URL(fileURLWithPath: out + "/prepare.json")))
            as! [String: Any]
        XCTAssertEqual(json["vocab_size"] as? Int, 5)
        XCTAssertEqual(json["sequence_length"] as? Int, 4)
        XCTAssertEqual(json["time_format"] as? String, "iso8601")
        XCTAssertEqual(json["label_threshold_value"] as? Double, 5)
        XCTAssertTrue(json["shuffle_seed"] is NSNull)
        XCTAssertTrue(json["dedupe_column"] is NSNull)
        XCTAssertEqual((json["rows"] as? [String: Int])?["written"], 3)
        XCTAssertEqual((json["feature_scaling"] as? [[String: Any]])?.count, 6)
        XCTAssertEqual(
            try PrepareRecord.read(path: out + "/prepare.json"), record)
    }

    func testMedianThresholdUsesTrainingRowsOnly() throws {
        let dir = try makeTemporaryFolder(self)
        let csv = dir + "/d.csv"
        // 5 rows, split 0.4: training = floor(5 * 0.6) = 3 rows (n = 1, 2, 3,
        // median 2). All five rows would have median 3.
        try writeText("text,n\na,1\nb,3\nc,2\nd,100\ne,200\n", to: csv)
        let record = try runPrepareForTest(
            csv: csv, out: dir + "/o",
            basic + ["--validation-split", "0.4", "--sequence-length", "1"])
        XCTAssertEqual(record.labelThresholdValue, 2)
        XCTAssertEqual(record.rows.training, 3)
        XCTAssertEqual(record.rows.validation, 2)
        XCTAssertEqual(
            try readFloats(dir + "/o/labels.npy").values, [0, 1, 0, 1, 1])
        XCTAssertEqual(record.labels.trainingPositive, 1)
        XCTAssertEqual(record.labels.validationPositive, 2)
        // The vocabulary comes from the training rows: d and e are unknown.
        XCTAssertEqual(
            try readInt32s(dir + "/o/main_input.npy").values, [2, 3, 4, 1, 1])
        XCTAssertEqual(record.vocabularyWords, 3)
    }

    func testScalingStatisticsUseTrainingRowsOnly() throws {
        let dir = try makeTemporaryFolder(self)
        let csv = dir + "/d.csv"
        try writeText(
            "text,n,x,c\na,1,1,7\nb,1,2,7\nc,1,3,7\nd,1,100,-5\n", to: csv)
        let record = try runPrepareForTest(
            csv: csv, out: dir + "/o",
            basic + ["--validation-split", "0.25", "--aux-columns", "x,c"])
        let x = record.featureScaling[0]
        XCTAssertEqual(x.mean, 2)
        XCTAssertEqual(x.std, (2.0 / 3).squareRoot(), accuracy: 1e-12)
        let c = record.featureScaling[1]
        XCTAssertEqual(c.std, 0)
        XCTAssertEqual(c.divisor, 1)
        let aux = try readFloats(dir + "/o/aux_input.npy").values
        XCTAssertEqual(aux[0], Float(-1 / x.std), accuracy: 1e-6)
        XCTAssertEqual(aux[6], Float(98 / x.std), accuracy: 1e-4)
        XCTAssertEqual([aux[1], aux[3], aux[5], aux[7]], [0, 0, 0, -12])
    }

    func testBOMAndCRLFFileImportsByteIdentically() throws {
        let dir = try makeTemporaryFolder(self)
        let lf = """
            text,n,when
            "first line\nsecond, with \"\"quotes\"\"\",3,2017-07-14T14:30:59+0000
            plain,1,2017-07-10T01:00:00Z
            "x\ny",8,2017-07-11T12:00:00Z

            """
        let crlf = "\u{FEFF}" + lf.replacingOccurrences(of: "\n", with: "\r\n")
        XCTAssertNotEqual(Array(lf.utf8), Array(crlf.utf8))
        for (name, text) in [("a", lf), ("b", crlf)] {
            try FileManager.default.createDirectory(
                atPath: "\(dir)/\(name)", withIntermediateDirectories: true)
            try writeText(text, to: "\(dir)/\(name)/posts.csv")
            try runPrepareForTest(
                csv: "\(dir)/\(name)/posts.csv", out: "\(dir)/\(name)/out",
                basic + [
                    "--time-column", "when", "--validation-split", "0.3",
                    "--shuffle-seed", "7",
                ])
        }
        for file in [
            "main_input.npy", "aux_input.npy", "labels.npy", "vocabulary.txt",
            "prepare.json",
        ] {
            let a = FileManager.default.contents(atPath: "\(dir)/a/out/\(file)")
            let b = FileManager.default.contents(atPath: "\(dir)/b/out/\(file)")
            XCTAssertNotNil(a, file)
            XCTAssertEqual(a, b, file)
        }
    }

    func testDedupeKeepsLastOccurrence() throws {
        let dir = try makeTemporaryFolder(self)
        let csv = dir + "/d.csv"
        try writeText(
            "id,text,n,seen\nk1,one,1,5\nk2,two,2,1\nk1,three,3,2\nk3,four,4,9\n",
            to: csv)
        let record = try runPrepareForTest(
            csv: csv, out: dir + "/last",
            basic + ["--dedupe-column", "id", "--vocab-size", "10"])
        XCTAssertEqual(record.rows.duplicatesDropped, 1)
        // Kept rows in file order: two, three, four.
        XCTAssertEqual(
            try String(
                contentsOfFile: dir + "/last/vocabulary.txt", encoding: .utf8),
            "two\nthree\nfour\n")

        let latest = try runPrepareForTest(
            csv: csv, out: dir + "/latest",
            basic + [
                "--dedupe-column", "id", "--dedupe-latest-column", "seen",
                "--vocab-size", "10",
            ])
        XCTAssertEqual(latest.dedupeLatestCompare, "number")
        // k1's greatest `seen` is the first row (5): one, two, four.
        XCTAssertEqual(
            try String(
                contentsOfFile: dir + "/latest/vocabulary.txt", encoding: .utf8),
            "one\ntwo\nfour\n")
    }

    func testDedupeLatestByTime() throws {
        let dir = try makeTemporaryFolder(self)
        let csv = dir + "/d.csv"
        try writeText(
            """
            id,text,n,scraped
            k1,old,1,2017-07-14 11:09:00.000001
            k1,new,2,2017-07-14 11:09:00.5
            k1,older,3,2017-07-14 11:01:00.999999

            """, to: csv)
        let record = try runPrepareForTest(
            csv: csv, out: dir + "/o",
            basic + [
                "--dedupe-column", "id", "--dedupe-latest-column", "scraped",
            ])
        XCTAssertEqual(record.dedupeLatestCompare, "time")
        XCTAssertEqual(record.rows.written, 1)
        XCTAssertEqual(
            try String(
                contentsOfFile: dir + "/o/vocabulary.txt", encoding: .utf8),
            "new\n")
    }

    func testShuffleIsSeededAndRecorded() throws {
        let dir = try makeTemporaryFolder(self)
        let csv = dir + "/d.csv"
        let body = (1...30).map { "w\($0),\($0)" }.joined(separator: "\n")
        try writeText("text,n\n" + body + "\n", to: csv)
        let plain = try runPrepareForTest(
            csv: csv, out: dir + "/p", basic + ["--sequence-length", "1"])
        XCTAssertNil(plain.shuffleSeed)
        let fileOrder = try readInt32s(dir + "/p/main_input.npy").values
        XCTAssertEqual(fileOrder, (2...31).map(Int32.init))
        try runPrepareForTest(
            csv: csv, out: dir + "/s1",
            basic + ["--sequence-length", "1", "--shuffle-seed", "1337"])
        try runPrepareForTest(
            csv: csv, out: dir + "/s2",
            basic + ["--sequence-length", "1", "--shuffle-seed", "1337"])
        try runPrepareForTest(
            csv: csv, out: dir + "/s3",
            basic + ["--sequence-length", "1", "--shuffle-seed", "1338"])
        let a = try String(
            contentsOfFile: dir + "/s1/vocabulary.txt", encoding: .utf8)
        XCTAssertEqual(
            a,
            try String(
                contentsOfFile: dir + "/s2/vocabulary.txt", encoding: .utf8))
        XCTAssertNotEqual(
            a,
            try String(
                contentsOfFile: dir + "/s3/vocabulary.txt", encoding: .utf8))
        XCTAssertNotEqual(
            a,
            try String(
                contentsOfFile: dir + "/p/vocabulary.txt", encoding: .utf8))
        XCTAssertEqual(Set(a.split(separator: "\n")).count, 30)
    }

    func testSkipEmptyTextCountsRows() throws {
        let dir = try makeTemporaryFolder(self)
        let csv = dir + "/d.csv"
        try writeText("text,n\nhello,1\n,2\n\" -- !\",3\nworld,4\n", to: csv)
        let record = try runPrepareForTest(
            csv: csv, out: dir + "/o", basic + ["--skip-empty-text"])
        XCTAssertEqual(record.rows.emptyTextDropped, 2)
        XCTAssertEqual(record.rows.written, 2)
        XCTAssertTrue(record.skipEmptyText)
    }

    func testReusedVocabularyGivesTheSameIds() throws {
        let dir = try makeTemporaryFolder(self)
        try writeText("text,n\nthe cat sat,1\nthe dog,2\n", to: dir + "/a.csv")
        try writeText("text,n\ndog and cat,5\n", to: dir + "/b.csv")
        try runPrepareForTest(
            csv: dir + "/a.csv", out: dir + "/a",
            basic + ["--vocab-size", "50", "--sequence-length", "3"])
        let record = try runPrepareForTest(
            csv: dir + "/b.csv", out: dir + "/b",
            basic + [
                "--vocab-size", "50", "--sequence-length", "3", "--vocabulary",
                dir + "/a/vocabulary.txt",
            ])
        XCTAssertEqual(record.vocabularyReusedFrom, dir + "/a/vocabulary.txt")
        // the 2, cat 3, sat 4, dog 5
        XCTAssertEqual(
            try readInt32s(dir + "/b/main_input.npy").values, [5, 1, 3])
        let message = thrownMessage {
            try runPrepareForTest(
                csv: dir + "/b.csv", out: dir + "/c",
                basic + [
                    "--vocab-size", "10000", "--vocabulary",
                    dir + "/a/vocabulary.txt",
                ])
        }
        XCTAssertTrue(
            message.contains("50") && message.contains("10000"), message)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/c"))
    }

    func testRefusesToReplaceAPreparedFolderWithoutOverwrite() throws {
        let dir = try makeTemporaryFolder(self)
        try writeText("text,n\na b,1\n", to: dir + "/a.csv")
        try writeText("text,n\nc d e,1\n", to: dir + "/b.csv")
        try runPrepareForTest(csv: dir + "/a.csv", out: dir + "/o", basic)
        let message = thrownMessage {
            try runPrepareForTest(csv: dir + "/b.csv", out: dir + "/o", basic)
        }
        XCTAssertTrue(message.contains("--overwrite"), message)
        XCTAssertEqual(
            try String(
                contentsOfFile: dir + "/o/vocabulary.txt", encoding: .utf8),
            "a\nb\n")
        try runPrepareForTest(
            csv: dir + "/b.csv", out: dir + "/o", basic + ["--overwrite"])
        XCTAssertEqual(
            try String(
                contentsOfFile: dir + "/o/vocabulary.txt", encoding: .utf8),
            "c\nd\ne\n")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir).sorted(),
            ["a.csv", "b.csv", "o"])
        // A folder that is not a prepared one is never replaced.
        try FileManager.default.createDirectory(
            atPath: dir + "/mine", withIntermediateDirectories: true)
        try writeText("keep", to: dir + "/mine/notes.txt")
        let refusal = thrownMessage {
            try runPrepareForTest(
                csv: dir + "/a.csv", out: dir + "/mine", basic + ["--overwrite"]
            )
        }
        XCTAssertTrue(refusal.contains("not a prepared folder"), refusal)
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: dir + "/mine/notes.txt"))
    }

    func testRunPrepareUsageErrorsAndHelp() throws {
        XCTAssertEqual(try runPrepare(["--help"]), 0)
        let missing = thrownMessage {
            _ = try runPrepare(["--csv", "x.csv", "--out", "o"])
        }
        XCTAssertTrue(
            missing.contains("--label-threshold")
                || missing.contains("--text-column"), missing)
        let threshold = thrownMessage {
            _ = try runPrepare([
                "--csv", "x.csv", "--out", "o", "--text-column", "t",
                "--label-column", "n",
                "--label-threshold", "average",
            ])
        }
        XCTAssertTrue(threshold.contains("'average'"), threshold)
        let split = thrownMessage {
            _ = try runPrepare(
                defaultPrepareArguments(csv: "x.csv", out: "o") + [
                    "--validation-split", "1",
                ])
        }
        XCTAssertTrue(split.contains("given twice"), split)
    }

    func testDefaultArgumentsParse() throws {
        let options = try XCTUnwrap(
            PrepareOptions.parse(
                defaultPrepareArguments(csv: "in.csv", out: "o")))
        XCTAssertEqual(
            options.features.names,
            ["hour_sin", "hour_cos", "dow_sin", "dow_cos", "link_video"])
        XCTAssertEqual(options.labelThreshold, .median)
        XCTAssertEqual(options.shuffleSeed, 1337)
        XCTAssertEqual(options.validationSplit, 0.2)
        XCTAssertEqual(options.dedupeLatestColumn, "scrape_time")
        XCTAssertEqual(options.vocabSize, 10000)
        XCTAssertEqual(options.sequenceLength, 100)
        XCTAssertTrue(options.skipEmptyText)
    }
}
