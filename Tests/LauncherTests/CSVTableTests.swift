import XCTest

@testable import Launcher

final class CSVTableTests: XCTestCase {
    private func parse(_ text: String, file: String = "t.csv") throws
        -> CSVTable
    {
        try CSVTable(bytes: Array(text.utf8), file: file)
    }

    private func rows(_ table: CSVTable) -> [[String]] {
        (0..<table.rowCount).map { r in
            (0..<table.columnCount).map { table.field(r, $0) }
        }
    }

    /// The error a parse throws, as text.
    private func failure(_ text: String) -> String {
        do {
            _ = try parse(text)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    func testPlainAndQuotedFields() throws {
        let t = try parse("a,b,c\n1,\"x, y\",\"say \"\"hi\"\"\"\n,\"\",last\n")
        XCTAssertEqual(t.header, ["a", "b", "c"])
        XCTAssertEqual(
            rows(t), [["1", "x, y", "say \"hi\""], ["", "", "last"]])
    }

    func testEmbeddedLineBreaksAndLineNumbers() throws {
        let t = try parse(
            "id,text,n\r\n1,\"two\r\nlines\",5\r\n2,\"a\nb\nc\",6\r\n3,z,7")
        XCTAssertEqual(
            rows(t),
            [
                ["1", "two\nlines", "5"], ["2", "a\nb\nc", "6"],
                ["3", "z", "7"],
            ])
        XCTAssertEqual(t.line(0, 0), 2)
        XCTAssertEqual(t.line(0, 2), 3)  // the field after the embedded break
        XCTAssertEqual(t.line(1, 0), 4)
        XCTAssertEqual(t.line(2, 0), 7)
    }

    func testCRLFAndLFAndBOMGiveTheSameTable() throws {
        let lf = "h1,h2\n\"a\nb\",1\nc,2\n"
        let crlf = "\u{FEFF}h1,h2\r\n\"a\r\nb\",1\r\nc,2\r\n"
        let mixed = "h1,h2\r\n\"a\r\nb\",1\nc,2"
        let a = try parse(lf), b = try parse(crlf), c = try parse(mixed)
        XCTAssertEqual(b.header, ["h1", "h2"])  // no BOM in the first name
        XCTAssertEqual(a.header, b.header)
        XCTAssertEqual(rows(a), rows(b))
        XCTAssertEqual(rows(a), rows(c))
        XCTAssertEqual(rows(a), [["a\nb", "1"], ["c", "2"]])
    }

    func testTrailingBlankLinesIgnoredButNotInside() throws {
        XCTAssertEqual(try parse("a,b\n1,2\n\n\n").rowCount, 1)
        let message = failure("a,b\n1,2\n\n3,4\n")
        XCTAssertTrue(message.contains("line 3"), message)
        XCTAssertTrue(message.contains("empty line"), message)
    }

    func testUnterminatedQuoteNamesTheLineItOpened() {
        let message = failure("a,b\n1,2\n3,\"open\nmore\nstill\n")
        XCTAssertTrue(message.hasPrefix("t.csv: line 3:"), message)
        XCTAssertTrue(message.contains("never closed"), message)
    }

    func testStrayQuoteInUnquotedField() {
        let message = failure("a,b\n1,2\n3,ab\"c\n")
        XCTAssertTrue(message.hasPrefix("t.csv: line 3:"), message)
        XCTAssertTrue(message.contains("double quote"), message)
    }

    func testTextAfterClosingQuote() {
        let message = failure("a,b\n\"x\"y,2\n")
        XCTAssertTrue(message.hasPrefix("t.csv: line 2:"), message)
        XCTAssertTrue(message.contains("after the closing"), message)
    }

    func testWrongFieldCountNamesRowAndLine() {
        let message = failure("a,b,c\n1,2,3\n\"x\ny\",2,3\n4,5\n")
        XCTAssertTrue(message.hasPrefix("t.csv: data row 3 (line 5):"), message)
        XCTAssertTrue(message.contains("found 2 fields, expected 3"), message)
    }

    func testInvalidUTF8NamesTheLine() {
        var bytes = Array("a,b\r\n1,2\r\nx".utf8)
        bytes += [0xC3, 0x28]  // a lead byte followed by a non-continuation
        bytes += Array(",3\r\n".utf8)
        XCTAssertThrowsError(try CSVTable(bytes: bytes, file: "bad.csv")) {
            error in
            let message = "\(error)"
            XCTAssertTrue(message.hasPrefix("bad.csv: line 3:"), message)
            XCTAssertTrue(message.contains("UTF-8"), message)
        }
    }

    func testEmptyFileAndHeaderOnly() throws {
        XCTAssertTrue(failure("").contains("empty"))
        XCTAssertEqual(try parse("a,b\n").rowCount, 0)
    }

    func testMissingColumnListsTheHeader() throws {
        let t = try parse("message,shares\nhi,1\n")
        XCTAssertThrowsError(try t.columnIndex("likes", option: "label-column"))
        { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("'likes'"), message)
            XCTAssertTrue(message.contains("'message', 'shares'"), message)
            XCTAssertTrue(message.hasPrefix("t.csv"), message)
        }
    }

    func testSingleColumnKeepsInnerEmptyLines() throws {
        let t = try parse("text\nA\n\nB\n")
        XCTAssertEqual(rows(t), [["A"], [""], ["B"]])
    }
}
