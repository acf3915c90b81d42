import Foundation
import XCTest

/// `train` with no --data: the bundled data set is imported once (by rank
/// 0 under mpirun), trained on, and saved beside the weights so that
/// `predict --csv` needs no import options.
final class DefaultRunTests: XCTestCase {
    /// A small stand-in for the bundled CSV, with its columns, found
    /// through HEADLINE_DATA_DIR.
    private func writeBundle(_ folder: String) throws {
        try FileManager.default.createDirectory(
            atPath: folder, withIntermediateDirectories: true)
        let words = "storm city vote team market school rain bridge mayor"
            .split(separator: " ")
        var lines = [
            "created_time,description,link,message,page_id,post_id,"
                + "react_angry,react_haha,react_like,react_love,react_sad,"
                + "react_wow,scrape_time,shares"
        ]
        for i in 0..<60 {
            let text = (0..<(3 + i % 5)).map {
                words[(i * 7 + $0 * 3) % words.count]
            }
            .joined(separator: " ")
            let link =
                i % 4 == 0
                ? "https://www.facebook.com/cnn/videos/\(i)/"
                : "http://cnn.it/\(i)"
            let day = 1 + i % 14
            lines.append(
                "2017-07-\(day < 10 ? "0" : "")\(day)T\(10 + i % 12):30:00+0000,"
                    + " ,\(link),\"\(text), news\",5550,5550_\(i),0,0,\(i),0,0,0,"
                    + "2017-07-14 11:01:00.000000,\((i * 37) % 101)")
        }
        try (lines.joined(separator: "\r\n") + "\r\n").write(
            toFile: folder + "/fb_news_posts_20K.csv", atomically: true,
            encoding: .utf8)
    }

    func testDefaultRunImportsOnceTrainsAndPredictsFromCSV() throws {
        let dir = try temporaryDirectory(for: self)
        try writeBundle(dir + "/bundle")
        let environment = ["HEADLINE_DATA_DIR": dir + "/bundle"]
        let run = dir + "/run"
        let sizes = [
            "--embedding-dim", "6", "--lstm-units", "3", "--dense-units", "4",
        ]
        let first = try CLI.runMPI(
            ranks: 2, ["train", "--epochs", "2", "--output", run] + sizes,
            environment: environment)
        XCTAssertEqual(first.status, 0, first.transcript)
        XCTAssertEqual(
            occurrences(of: "preparing the bundled data set", in: first.stdout),
            1, first.transcript)
        XCTAssertEqual(occurrences(of: "Epoch 2/2", in: first.stdout), 1)
        for name in [
            "data/prepare.json", "data/main_input.npy", "weights.safetensors",
            "prepare.json", "vocabulary.txt", "metrics.jsonl",
        ] {
            XCTAssertTrue(
                FileManager.default.fileExists(atPath: run + "/" + name), name)
        }
        let metrics = try String(
            contentsOfFile: run + "/metrics.jsonl", encoding: .utf8
        )
        .split(separator: "\n")
        XCTAssertEqual(metrics.count, 2)
        let last = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(metrics[1].utf8))
                as? [String: Any])
        for key in [
            "val_main_output_auc", "val_main_output_accuracy", "val_loss",
            "main_output_auc",
        ] {
            XCTAssertNotNil(last[key] as? Double, key)
        }

        // A second run finds the prepared folder and does not import again.
        let second = try CLI.run(
            ["train", "--epochs", "1", "--output", run] + sizes,
            environment: environment)
        XCTAssertEqual(second.status, 0, second.transcript)
        XCTAssertEqual(
            occurrences(
                of: "preparing the bundled data set", in: second.stdout),
            0, second.transcript)

        // New posts, predicted with the choices saved beside the weights.
        let posts = dir + "/new.csv"
        try
            ("message,created_time,link\r\n"
            + "\"Storm hits the city, mayor says\",2017-07-15T09:00:00+0000,"
            + "http://cnn.it/x\r\n"
            + "team vote,2017-07-15T21:00:00+0000,"
            + "https://www.facebook.com/cnn/videos/9/\r\n")
            .write(toFile: posts, atomically: true, encoding: .utf8)
        let out = dir + "/predictions.csv"
        let predicted = try CLI.run([
            "predict", "--weights", run + "/weights.safetensors", "--csv",
            posts,
            "--out", out,
        ])
        XCTAssertEqual(predicted.status, 0, predicted.transcript)
        let rows = try String(contentsOfFile: out, encoding: .utf8)
            .split(separator: "\r\n").map(String.init)
        XCTAssertEqual(rows.first, "text,main_output,aux_output")
        XCTAssertEqual(rows.count, 3, "\(rows)")
        XCTAssertTrue(rows[1].hasPrefix("\"Storm hits the city, mayor says\","))
        for row in rows.dropFirst() {
            let fields = row.split(separator: ",")
            for value in fields.suffix(2) {
                let p = try XCTUnwrap(Double(value), row)
                XCTAssertTrue(p > 0 && p < 1, row)
            }
        }
    }
}
